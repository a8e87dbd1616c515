"""Seconds per photo for photo -> sketch with a style on the `sd15-shaped` backbone (noise-and-extract at 13
timesteps x [uncond, cond], VAE encode/decode, generator forward), at the style's resolution.

    python benchmarks/photo2sketch.py --resolution 512 --photos 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks._util import machine, peak_rss_mb  # noqa: E402
from diffsketch_core.diffusion.backbone import load_backbone  # noqa: E402
from diffsketch_core.diffusion.features import DEFAULT_TIMESTEPS  # noqa: E402
from diffsketch_core.style.generator import generator_for  # noqa: E402
from diffsketch_core.style.photo2sketch import PhotoToSketch  # noqa: E402
from diffsketch_core.style.store import Style  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--photos", type=int, default=2)
    p.add_argument("--backbone", default="sd15-shaped", help="'tiny' for a quick check of the script itself")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bb = load_backbone(args.backbone)
    style = Style(generator_for(bb, DEFAULT_TIMESTEPS).to(bb.device).eval(), "a photo", args.resolution)
    model = PhotoToSketch(style, bb)
    photo = Image.open(ROOT / "assets" / "photos" / "astronaut.png").convert("RGB").resize((512, 512))
    if torch.cuda.is_available():
        model(photo)
        torch.cuda.synchronize()
    times = []
    for _ in range(args.photos):
        start = time.perf_counter()
        model(photo)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    mem = (f"peak GPU {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if torch.cuda.is_available()
           else f"peak RSS {peak_rss_mb() / 1024:.1f} GiB")
    print(f"machine: {machine()}; {args.backbone}; 512x512 photo processed at {args.resolution}; "
          f"seconds per photo: {', '.join(f'{t:.2f}' for t in times)} (mean {sum(times) / len(times):.2f}); {mem}")


if __name__ == "__main__":
    main()
