"""Sketch -> picture: what each way of steering costs, and (with real weights) how well the picture keeps the sketch.

Runs the same prompt, sketch and seed four ways: plain sampling, ControlNet, DiffSketching sketch guidance (HED +
chamfer loss on the predicted x0), and both; prints UNet and ControlNet calls, extractor backward passes, seconds and
the ratio of seconds to plain sampling. With a random-weight backbone (the default, "sd15-shaped": the real SD-1.5
shapes) and the zero-init ControlNet it measures ONLY the cost: compute does not depend on weight values, and the
sketch-fidelity column then means nothing (it is printed but labelled so). With real weights (--backbone,
--controlnet) the fidelity column is the chamfer loss between the picture's HED sketch and the input sketch.

    nice -n 5 python benchmarks/sketch2image.py --size 256 --steps 4 --threads 1
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DIFFSKETCH_WEIGHTS_DIR", str(ROOT.parent / "shared" / "weights"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from benchmarks._util import machine, peak_rss_mb  # noqa: E402
from diffsketch_core.diffusion.backbone import SD15_SHAPED, load_backbone  # noqa: E402
from diffsketch_core.picture.controlnet import ZERO_INIT, load_controlnet  # noqa: E402
from diffsketch_core.picture.extractor import load_extractor  # noqa: E402
from diffsketch_core.perceptual import load_lpips, lpips_needs  # noqa: E402
from diffsketch_core.picture.sketch2image import PictureConfig, sketch_to_image  # noqa: E402
from diffsketch_core.picture.sketch_loss import SketchLoss, SketchTarget  # noqa: E402


def drawn_sketch(size: int) -> Image.Image:
    """A house: a few straight lines and a circle, dark on white."""
    img = Image.new("L", (size, size), 255)
    d, s = ImageDraw.Draw(img), size / 256
    d.rectangle([60 * s, 120 * s, 196 * s, 220 * s], outline=0, width=max(1, round(3 * s)))
    d.line([50 * s, 125 * s, 128 * s, 50 * s, 206 * s, 125 * s], fill=0, width=max(1, round(3 * s)))
    d.ellipse([110 * s, 140 * s, 146 * s, 176 * s], outline=0, width=max(1, round(3 * s)))
    return img


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default=SD15_SHAPED)
    p.add_argument("--controlnet", default=ZERO_INIT)
    p.add_argument("--sketch", default=None, help="input sketch (default: a drawn house)")
    p.add_argument("--prompt", default="a small house with a round window")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--scale", type=float, default=1.0, help="sketch-guidance scale")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    bb = load_backbone(args.backbone)
    control = load_controlnet(bb, args.controlnet)
    hed = load_extractor("hed", bb.device)
    sketch = Image.open(args.sketch) if args.sketch else drawn_sketch(args.size)
    random_weights = bb.is_demo or control.is_zero_init
    lpips_loss = None
    if lpips_needs() is None:  # a second fidelity figure: LPIPS between the picture's HED sketch and the input
        target = SketchTarget.load(sketch, (args.size, args.size))
        lpips_loss = SketchLoss(target, chamfer=0.0, lpips=1.0, lpips_model=load_lpips(bb.device)).to(bb.device)
    print(f"# sketch -> picture on {bb.source} ({'RANDOM weights: cost only' if bb.is_demo else 'pretrained'}), "
          f"ControlNet {control.source}{' (zero-init: cost only)' if control.is_zero_init else ''}, {args.size} px, "
          f"{args.steps} DDIM steps, CFG 7.5 (2 UNet rows per call), guidance at steps < 70% of the schedule; {machine()}")
    runs = [("plain", None, 0.0), ("ControlNet", control, 0.0), ("sketch guidance (HED, chamfer)", None, args.scale),
            ("ControlNet + sketch guidance", control, args.scale)]
    rows, plain_s = [], None
    for name, cn, scale in runs:
        cfg = PictureConfig(args.prompt, steps=args.steps, width=args.size, height=args.size, sketch_scale=scale)
        res = sketch_to_image(bb, sketch, cfg, controlnet=cn, extractor=hed)
        c = res.cost
        plain_s = plain_s or c.seconds
        lp = float("nan")
        if lpips_loss is not None:
            ink = 1 - torch.from_numpy(np.asarray(res.sketches[0], dtype=np.float32) / 255)[None, None]
            with torch.no_grad():
                lp = float(lpips_loss(ink.to(bb.device))[0])
        rows.append((name, c.unet_calls, c.controlnet_calls, c.extractor_backwards, c.seconds, c.seconds / plain_s,
                     c.unet_seconds, c.controlnet_seconds, c.guidance_seconds, res.sketch_loss[0], lp))
        print(f"done: {name} {c.seconds:.1f} s (load average {os.getloadavg()[0]:.1f})", flush=True)
    fid = " (meaningless: random weights)" if random_weights else " (lower = closer)"
    print(f"\n| steering | UNet calls | ControlNet calls | extractor backward passes | s / picture | x plain | "
          f"of which UNet / ControlNet / guidance s | sketch chamfer{fid} | sketch LPIPS{fid} |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, u, cn, eb, s, ratio, us, cs, gs, loss, lp in rows:
        print(f"| {name} | {u} | {cn} | {eb} | {s:.1f} | {ratio:.2f} | {us:.1f} / {cs:.1f} / {gs:.1f} | {loss:.3f} | {lp:.3f} |")
    print(f"\npeak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
