"""GATE's content-shift proxy and the cost of each feature technique (issue 16).

1. Proxy: LPIPS between a photo and its Img2Img reconstruction (noise to a strength, DDIM back, decode) with each
   technique off and on, on BSDS500 test photos. A technique that steers the reconstruction back toward the photo
   (lower LPIPS) suppresses content shift, and GATE's guideline says its features are worth using. With the tiny
   random backbone (the default here) the numbers only prove the plumbing, and the script says so; with real
   weights (--backbone a local SD 1.x folder and --controlnet a real ControlNet, on a user's GPU) it is the paper's
   guideline.
2. Cost: UNet and ControlNet passes and seconds of one photo's feature extraction (13 timesteps x [uncond, cond])
   with each technique, and with amalgamation (plain + ControlNet + LoRA as three sources, as a style trained with
   --amalgamate extracts them) or an IP-Adapter (its ViT-H/14 image encoder included), on the sd15-shaped backbone
   (real SD-1.5 configs, random weights: cost does not depend on values), and the ratio to plain extraction,
   measured in rounds of every row in turn.

    python benchmarks/content_shift.py --photos 4 --cost-resolution 256
    python benchmarks/content_shift.py --skip-proxy --cost-resolution 128 --rows controlnet amalgamation --repeats 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFSKETCH_WEIGHTS_DIR", str(ROOT.parent / "shared" / "weights"))
BSDS = ROOT.parent / "shared" / "data" / "photos" / "bsds500" / "images" / "test"

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks._util import machine  # noqa: E402
from diffsketch_core.diffusion.backbone import load_backbone  # noqa: E402
from diffsketch_core.diffusion.controlnet import Control, load_controlnet, residuals, tiny_controlnet  # noqa: E402
from diffsketch_core.diffusion.features import FeatureExtractor, image_to_tensor  # noqa: E402
from diffsketch_core.diffusion.ip_adapter import IPAdapter, tiny_ip_adapter  # noqa: E402
from diffsketch_core.diffusion.lora import LoRA, load_lora  # noqa: E402
from diffsketch_core.diffusion.sampling import img2img  # noqa: E402
from diffsketch_core.perceptual import load_lpips  # noqa: E402
from diffsketch_core.style.training import make_control_image  # noqa: E402


def proxy(args) -> None:
    bb = load_backbone(args.backbone)
    res = args.resolution or bb.resolution
    photos = sorted(BSDS.glob("*.jpg"))[: args.photos]
    if not photos:
        raise SystemExit(f"no BSDS500 test photos under {BSDS}")
    lp = load_lpips(bb.device)
    techniques: dict[str, tuple] = {"plain": (None, None)}
    if args.controlnet:
        techniques[f"controlnet ({args.control_image})"] = (Control(load_controlnet(args.controlnet, bb), args.controlnet), None)
    if args.lora:
        techniques["lora"] = (None, load_lora(args.lora))
    cond, uncond = bb.encode_prompt(args.prompt), bb.encode_prompt("")
    ex = FeatureExtractor(bb)
    rows = {name: {s: [] for s in args.strengths} for name in techniques}
    for path in photos:
        img = Image.open(path).convert("RGB")
        x = image_to_tensor(img, (res, res)).to(bb.device)
        z0 = ex.encode(x)
        control_image = make_control_image(img, args.control_image, res).to(bb.device)
        for name, (control, lora) in techniques.items():
            extra = None
            if control is not None:
                extra = lambda xx, t, e, c=control: residuals(c, xx, t, e, control_image.expand(xx.shape[0], -1, -1, -1))  # noqa: E731
            for s in args.strengths:
                ctx = lora.applied(bb.unet) if lora is not None else torch.no_grad()
                with ctx, torch.no_grad():
                    z = img2img(bb, z0, cond, uncond, strength=s, steps=args.steps, seed=0, extra=extra)
                    recon = bb.vae.decode(z / bb.scaling_factor).sample.float().clamp(-1, 1)
                    rows[name][s].append(float(lp(recon, x.float()).mean()))
    print(f"machine: {machine()}; backbone {args.backbone}; {len(photos)} BSDS500 test photos at {res} px; "
          f"Img2Img {args.steps} DDIM steps, CFG 5, prompt {args.prompt!r}")
    if bb.is_demo:
        print("NOTE: random-weight backbone: these LPIPS figures only prove the plumbing; they say nothing about "
              "content shift. Run with real SD and ControlNet weights for GATE's guideline.")
    print("| technique | " + " | ".join(f"LPIPS at strength {s}" for s in args.strengths) + " |")
    print("|---|" + "---|" * len(args.strengths))
    for name, by_s in rows.items():
        print(f"| {name} | " + " | ".join(f"{sum(v) / len(v):.4f}" for v in by_s.values()) + " |")


def _made_lora(unet, rank: int = 8) -> LoRA:
    """A random rank-8 LoRA on every attention projection (cost only)."""
    g = torch.Generator().manual_seed(0)
    pairs = {}
    for name, m in unet.named_modules():
        if name.endswith(("to_q", "to_k", "to_v", "to_out.0")) and isinstance(m, torch.nn.Linear):
            pairs[name] = (torch.randn(rank, m.in_features, generator=g) * 0.01,
                           torch.randn(m.out_features, rank, generator=g) * 0.01, float(rank))
    return LoRA(pairs, "random")


def _random_ip_adapter(unet) -> IPAdapter:
    """A random plain IP-Adapter of SD-1.5's shapes, its image encoder ViT-H/14-shaped (h94/IP-Adapter's); cost only."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    shaped = tiny_ip_adapter(unet)  # the per-layer key layout; widths replaced below
    dim, width = unet.config.cross_attention_dim, 1024
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16, image_size=224,
        patch_size=14, projection_dim=width, hidden_act="gelu"))
    state = {"image_proj": {"proj.weight": torch.randn(4 * dim, width) * 0.01, "proj.bias": torch.zeros(4 * dim),
                            "norm.weight": torch.ones(dim), "norm.bias": torch.zeros(dim)},
             "ip_adapter": {k: torch.randn_like(v) * 0.01 for k, v in shaped.state["ip_adapter"].items()}}
    return IPAdapter(state, encoder.eval().requires_grad_(False), CLIPImageProcessor(), "random")


def cost(args) -> None:
    bb = load_backbone(args.cost_backbone)
    res = args.cost_resolution
    passes = {"unet": 0, "controlnet": 0}
    hooks = [bb.unet.register_forward_pre_hook(lambda m, a: passes.__setitem__("unet", passes["unet"] + 1))]
    cn = tiny_controlnet(bb.unet) if bb.is_demo else None
    if cn is not None:
        hooks.append(cn.register_forward_pre_hook(lambda m, a: passes.__setitem__("controlnet", passes["controlnet"] + 1)))
    image = torch.rand(1, 3, res, res, generator=torch.Generator().manual_seed(0)) * 2 - 1
    control_image = torch.rand(1, 3, res, res, generator=torch.Generator().manual_seed(1))
    cond, uncond = bb.encode_prompt("a photo"), bb.encode_prompt("")
    lora = _made_lora(bb.unet)
    # each setup is a list of feature sources (buckets); amalgamation extracts every source of the style
    # (style/extraction.py: plain, ControlNet alone, LoRA alone), each with its own noise, on one VAE encode
    setups = {"plain": [{}], "ControlNet": [{"control": Control(cn, "random")}],
              f"ControlNet + GATE {args.gate_steps} steps": [{"control": Control(cn, "random", steps=args.gate_steps)}],
              "LoRA (rank 8, all attention)": [{"lora": lora}],
              "amalgamation: plain + ControlNet + LoRA (3 sources)": [{}, {"control": Control(cn, "random")},
                                                                      {"lora": lora}],
              "IP-Adapter (+ 1 ViT-H/14 image-encoder pass)": [{"ip": True}]}
    keys = dict(zip(setups, ("plain", "controlnet", "gate", "lora", "amalgamation", "ipadapter")))
    wanted = [name for name in setups if name == "plain" or not args.rows or keys[name] in args.rows]
    ip = _random_ip_adapter(bb.unet) if any(keys[n] == "ipadapter" for n in wanted) else None
    photo = Image.fromarray(((image[0].permute(1, 2, 0) + 1) * 127.5).byte().numpy())
    extractors = {name: [FeatureExtractor(bb, max_batch=args.max_batch, **{k: v for k, v in kw.items() if k != "ip"})
                         for kw in setups[name]] for name in wanted}
    times: dict[str, list[float]] = {name: [] for name in wanted}
    counted: dict[str, dict] = {}
    # rounds of every row in turn: on a shared CPU a row and plain measured in the same round saw about the same
    # load, so the ratio is taken per round (median over rounds) and the seconds are the fastest round's
    for _ in range(args.repeats):
        for name in wanted:
            passes.update(unet=0, controlnet=0)
            start = time.perf_counter()
            with torch.no_grad():
                z0 = extractors[name][0].encode(image.to(bb.device))
                for k, (ex, kw) in enumerate(zip(extractors[name], setups[name])):
                    with ip.applied(bb.unet, ip.embed([photo]), 26) if kw.get("ip") else nullcontext():
                        ex.unet_features(z0, cond, uncond, seed=k,
                                         control_image=control_image if "control" in kw else None)
            times[name].append(time.perf_counter() - start)
            counted[name] = dict(passes)
    for h in hooks:
        h.remove()
    print(f"\nmachine: {machine()}; cost backbone {args.cost_backbone} at {res} px; one photo, 13 timesteps x "
          f"[uncond, cond] = 26 UNet rows, batches of {args.max_batch} (VAE decode not included); {args.repeats} "
          "round(s) of every row in turn")
    print("| technique | UNet forwards | ControlNet forwards | seconds (fastest) | x plain (median of rounds) | "
          "seconds, every round |")
    print("|---|---|---|---|---|---|")
    for name in wanted:
        ratios = sorted(t / b for t, b in zip(times[name], times["plain"]))
        p = counted[name]
        print(f"| {name} | {p['unet']} | {p['controlnet']} | {min(times[name]):.1f} | {ratios[len(ratios) // 2]:.2f} | "
              + ", ".join(f"{t:.1f}" for t in times[name]) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="tiny")
    p.add_argument("--controlnet", default="tiny", help="hub id / folder; 'tiny' with the tiny backbone; '' for off")
    p.add_argument("--control-image", default="canny")
    p.add_argument("--lora", default=None)
    p.add_argument("--photos", type=int, default=4)
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--strengths", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--prompt", default="a photo, high quality, highly realistic")
    p.add_argument("--cost-backbone", default="sd15-shaped")
    p.add_argument("--cost-resolution", type=int, default=512)
    p.add_argument("--gate-steps", type=int, default=3)
    p.add_argument("--max-batch", type=int, default=26)
    p.add_argument("--repeats", type=int, default=1, help="rounds of every cost row in turn")
    p.add_argument("--rows", nargs="*", default=None,
                   choices=["controlnet", "gate", "lora", "amalgamation", "ipadapter"],
                   help="cost rows to measure besides plain (default: all)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--skip-cost", action="store_true")
    p.add_argument("--skip-proxy", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.skip_proxy:
        proxy(args)
    if not args.skip_cost:
        cost(args)


if __name__ == "__main__":
    main()
