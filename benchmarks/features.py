"""Cost of DiffSketch feature extraction for one photo: 13 timesteps x [uncond, cond] through the UNet plus the
VAE encode and the hooked VAE decode, on the `sd15-shaped` backbone (real SD-1.5 configs, random weights:
compute and memory do not depend on weight values).

    python benchmarks/features.py                 # 512x512, batched and one row at a time, each in its own process
    python benchmarks/features.py --resolution 256 --modes batched

Each mode runs in a fresh subprocess so its peak memory is its own. Prints a table of measured figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_one(resolution: int, max_batch: int, threads: int | None) -> dict:
    import torch

    from benchmarks._util import machine, peak_rss_mb, timed
    from diffsketch_core.diffusion.backbone import load_backbone
    from diffsketch_core.diffusion.features import FeatureExtractor

    if threads:
        torch.set_num_threads(threads)
    r: dict = {"resolution": resolution, "max_batch": max_batch, "machine": machine()}
    with timed(r, "load_s"):
        bb = load_backbone("sd15-shaped")
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    ex = FeatureExtractor(bb, max_batch=max_batch, out_dtype=bb.dtype)
    image = torch.rand(1, 3, resolution, resolution, generator=torch.Generator().manual_seed(0)) * 2 - 1
    cond, uncond = bb.encode_prompt("a photo of a horse in mud"), bb.encode_prompt("")
    rss_before = peak_rss_mb()
    with torch.inference_mode():
        if torch.cuda.is_available():  # warm-up so kernels and allocator are not timed
            ex.extract(image, cond, uncond)
            torch.cuda.reset_peak_memory_stats()
        with timed(r, "vae_encode_s"):
            z0 = ex.encode(image)
        with timed(r, "unet_13t_cfg_s"):
            ex.unet_features(z0, cond, uncond)
        with timed(r, "vae_decode_s"):
            ex.vae_features(z0)
    r["total_s"] = r["vae_encode_s"] + r["unet_13t_cfg_s"] + r["vae_decode_s"]
    r["peak_rss_mb"] = round(peak_rss_mb())
    r["rss_after_load_mb"] = round(rss_before)
    if torch.cuda.is_available():
        r["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--modes", nargs="+", default=["batched", "sequential"], choices=["batched", "sequential"])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        print(json.dumps(run_one(args.resolution, args.child, args.threads)))
        return
    rows = []
    for mode in args.modes:
        max_batch = 26 if mode == "batched" else 1
        cmd = [sys.executable, __file__, "--resolution", str(args.resolution), "--child", str(max_batch)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ | {"HF_HUB_OFFLINE": "1"})
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["mode"] = mode
        rows.append(row)
    print(f"machine: {rows[0]['machine']}; sd15-shaped backbone; one {args.resolution}x{args.resolution} photo; "
          "13 timesteps x 2 guidance branches = 26 UNet rows")
    print(f"{'mode':<11}{'rows/forward':>13}{'VAE enc s':>11}{'UNet s':>9}{'VAE dec s':>11}{'total s':>9}"
          f"{'peak RSS MB':>13}{'peak GPU MB':>13}")
    for r in rows:
        print(f"{r['mode']:<11}{r['max_batch']:>13}{r['vae_encode_s']:>11.2f}{r['unet_13t_cfg_s']:>9.2f}"
              f"{r['vae_decode_s']:>11.2f}{r['total_s']:>9.2f}{r['peak_rss_mb']:>13}{r.get('peak_gpu_mb', '-'):>13}")


if __name__ == "__main__":
    main()
