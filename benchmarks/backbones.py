"""What SD 1.5, SD 2.1 and SDXL cost for DiffSketch's features, counted on the meta device (issue 16 part 6).

The real configs (`sd15-shaped`, `sd21-shaped`, `sdxl-shaped` in diffusion/backbone.py) are built on PyTorch's
meta device: no weights, no memory, no compute, so this runs in seconds on any machine, and torch's FlopCounterMode
counts the floating-point operations of each forward exactly (convolutions, linears and attention matmuls; norms and
activations are not counted). Seconds are not measured: random SDXL weights take about 14 GB in fp32, more than this
shared CPU can spare, and FLOPs do not depend on weight values. Multiply by a GPU's sustained FLOP/s for an estimate.

    python benchmarks/backbones.py                      # each family at its native size
    python benchmarks/backbones.py --resolution 512     # all at one size

Per family: parameters (UNet, VAE, text encoders), GFLOPs of one UNet row (one image, one guidance branch, one
timestep) up to DiffSketch's last decoder tap (early exit) and of a full row, of the VAE encode and the hooked VAE
decode, and of one photo's DiffSketch extraction (13 timesteps x 2 branches + encode + decode) with its ratio to
SD 1.5's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SOURCES = ("sd15-shaped", "sd21-shaped", "sdxl-shaped")


def gflops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def measure(source: str, resolution: int | None, timesteps: int) -> dict:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from diffsketch_core.diffusion.backbone import RANDOM_SOURCES, SDXL, _text_configs, _unet_config, _vae_config
    from diffsketch_core.diffusion.features import decoder_taps
    from diffsketch_core.diffusion.taps import AllTapsFired, Taps

    family = RANDOM_SOURCES[source]
    with torch.device("meta"):
        unet = UNet2DConditionModel(**_unet_config(source))
        vae = AutoencoderKL(**_vae_config(source))
        texts = _text_configs(source)
        encoders = [CLIPTextModel(texts[0])] + ([CLIPTextModelWithProjection(texts[1])] if family == SDXL else [])
        cfg = unet.config
        res = resolution or cfg.sample_size * 8
        lat = res // 8
        x = torch.empty(1, 4, lat, lat)
        kwargs = {"encoder_hidden_states": torch.empty(1, 77, cfg.cross_attention_dim)}
        if family == SDXL:
            pooled = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
            kwargs["added_cond_kwargs"] = {"text_embeds": torch.empty(1, pooled), "time_ids": torch.empty(1, 6)}
        t = torch.tensor([261])

        def early_exit():
            with Taps(unet, decoder_taps(unet), early_exit=True):
                try:
                    unet(x, t, **kwargs)
                except AllTapsFired:
                    pass

        row = gflops(early_exit)
        full = gflops(lambda: unet(x, t, **kwargs))
        image = torch.empty(1, 3, res, res)
        encode = gflops(lambda: vae.encode(image))
        decode = gflops(lambda: vae.decode(x))
    params = {"unet": sum(p.numel() for p in unet.parameters()) / 1e6,
              "vae": sum(p.numel() for p in vae.parameters()) / 1e6,
              "text": sum(p.numel() for e in encoders for p in e.parameters()) / 1e6}
    return {"source": source, "family": family, "resolution": res, "params_m": params, "row_gflops": row,
            "full_row_gflops": full, "vae_encode_gflops": encode, "vae_decode_gflops": decode,
            "photo_gflops": 2 * timesteps * row + encode + decode, "decoder_taps": len(decoder_taps(unet))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=None, help="square image side (default: each family's native)")
    p.add_argument("--timesteps", type=int, default=13)
    p.add_argument("--sources", nargs="+", default=list(SOURCES), choices=SOURCES)
    args = p.parse_args()
    rows = [measure(s, args.resolution, args.timesteps) for s in args.sources]
    base = next((r["photo_gflops"] for r in rows if r["source"] == "sd15-shaped"), None)
    print("FLOPs counted on the meta device (torch FlopCounterMode: convs, linears, attention matmuls); "
          f"one photo = {args.timesteps} timesteps x 2 branches + VAE encode + decode")
    print("| backbone | px | params M (UNet / VAE / text) | decoder taps | UNet row GFLOPs (to last tap / full) "
          "| VAE enc / dec GFLOPs | one photo GFLOPs | x SD 1.5 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        pm = r["params_m"]
        ratio = f"{r['photo_gflops'] / base:.2f}" if base else "-"
        print(f"| {r['source']} ({r['family']}) | {r['resolution']} | {pm['unet']:.0f} / {pm['vae']:.1f} / "
              f"{pm['text']:.0f} | {r['decoder_taps']} | {r['row_gflops']:.0f} / {r['full_row_gflops']:.0f} | "
              f"{r['vae_encode_gflops']:.0f} / {r['vae_decode_gflops']:.0f} | {r['photo_gflops']:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
