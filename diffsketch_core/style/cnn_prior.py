"""A sketch prior for CPU styles (issue 13): the CNN generator pretrained on many (photo, sketch) pairs, the start
a one-shot style is fitted from. From one example alone a style must guess which of a new photo's edges the
artist would draw; the prior already knows which edges people draw, so the example only has to teach the line.

The shipped prior (checkpoints/cnn_sketch_prior) learnt the human contours of BSDS500 train + val (for each photo
the mean of its annotators' boundaries, so edges more people drew are darker), with the one-shot benchmark's
three example photos left out. It never saw a BSDS500 test photo, nor any extractor's sketch: the extractor
styles the benchmark measures (XDoG, HED, PiDiNet) are not its targets.

    pairs = bsds_pairs(root, ("train", "val"), exclude=("100075",))
    generator = pretrain(backbone, pairs, PriorConfig(iterations=700))   # then generator.save_pretrained(...)
    start = load_prior(backbone)     # the shipped prior for this backbone, or None (another backbone, or absent)

CLI: python -m diffsketch_core.style.cnn_prior --bsds ../shared/data/photos/bsds500 --out checkpoints/cnn_sketch_prior
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from .. import cli
from ..diffusion.cnn import CNNBackbone, load_cnn_backbone
from ..checkpoints import load_saved
from ..errors import BadInputError
from ..perceptual import load_lpips, sketch_lpips
from .cnn_generator import CNNSketchGenerator, cnn_generator_for
from .store import check_compatible
from .training import CancelFlag, TrainEvent

PRIOR_DIR = Path(__file__).resolve().parents[2] / "checkpoints" / "cnn_sketch_prior"
Pair = tuple[np.ndarray, np.ndarray]  # photo (H, W, 3) and sketch (H, W), float32 in [0, 1], 1 = paper


@dataclass
class PriorConfig:
    iterations: int = 700
    batch: int = 6
    crop: int = 144  # as the one-shot trainer's views of a 256 px photo
    lr: float = 2e-3
    l1: float = 2.0  # the one-shot trainer's L1 : LPIPS
    lpips: float = 1.0
    seed: int = 0


def _work_photo(path: Path, side: int) -> Image.Image:
    """The photo at the one-shot benchmark's work size: long side `side`, multiples of 16."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = side / max(w, h)
    return img.resize((max(16, round(w * s / 16) * 16), max(16, round(h * s / 16) * 16)), Image.Resampling.LANCZOS)


def consensus_sketch(boundaries: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Annotators' 1 px boundary maps -> one sketch at `size` (W, H): each thickened to 3 px at full size, averaged
    (an edge drawn by more people is darker), then scaled down."""
    import cv2

    ink = np.mean([cv2.dilate(b.astype(np.uint8), np.ones((3, 3), np.uint8)) for b in boundaries], 0)
    img = Image.fromarray(np.round(255 * (1 - ink)).astype(np.uint8), "L").resize(size, Image.Resampling.LANCZOS)
    return np.asarray(img, np.float32) / 255.0


def bsds_pairs(root: str | Path, splits: Sequence[str] = ("train", "val"), exclude: Sequence[str] = (),
               side: int = 256) -> list[Pair]:
    """BSDS500 photos of `splits` with their human-contour consensus, at work size (never the test split's)."""
    import scipy.io

    root = Path(root)
    if "test" in splits:
        raise BadInputError("The prior must not learn the test photos the benchmark scores on.")
    pairs = []
    for split in splits:
        photos = sorted((root / "images" / split).glob("*.jpg"))
        if not photos:
            raise BadInputError(f"No BSDS500 photos in {root / 'images' / split}.")
        for path in photos:
            if path.stem in exclude:
                continue
            photo = _work_photo(path, side)
            gt = scipy.io.loadmat(root / "groundTruth" / split / f"{path.stem}.mat")["groundTruth"]
            bounds = [gt[0, k]["Boundaries"][0, 0] for k in range(gt.shape[1])]
            pairs.append((np.asarray(photo, np.float32) / 255.0, consensus_sketch(bounds, photo.size)))
    return pairs


def _batch(pairs: Sequence[Pair], rng: np.random.Generator, n: int, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n random crops (half of them mirrored) of random pairs; photos smaller than the crop give smaller crops."""
    c = min([crop] + [min(p[1].shape) for p in pairs]) // 16 * 16
    xs, ys = [], []
    for _ in range(n):
        photo, sketch = pairs[rng.integers(len(pairs))]
        h, w = sketch.shape
        y0, x0 = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
        x, y = photo[y0:y0 + c, x0:x0 + c], sketch[y0:y0 + c, x0:x0 + c]
        if rng.random() < 0.5:
            x, y = x[:, ::-1], y[:, ::-1]
        xs.append(torch.from_numpy(x.copy()).permute(2, 0, 1))
        ys.append(torch.from_numpy(y.copy())[None])
    return torch.stack(xs), torch.stack(ys)


def pretrain(backbone: CNNBackbone, pairs: Sequence[Pair], cfg: PriorConfig | None = None,
             lpips_model: torch.nn.Module | None = None, on_event: Optional[Callable[[TrainEvent], None]] = None,
             cancel: CancelFlag | None = None, generator: CNNSketchGenerator | None = None) -> CNNSketchGenerator:
    """Fit a generator to many pairs (L1 + LPIPS on random crops, Adam, cosine to 5% of lr)."""
    cfg = cfg or PriorConfig()
    if not pairs:
        raise BadInputError("No (photo, sketch) pairs to learn a prior from.")
    if min(min(p[1].shape) for p in pairs) < 32:
        raise BadInputError("Every pair must be at least 32 px a side.")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = generator or cnn_generator_for(backbone)
    if cfg.lpips > 0 and lpips_model is None:
        lpips_model = load_lpips()
    opt = torch.optim.Adam(gen.parameters(), lr=cfg.lr)
    emit, start = on_event or (lambda e: None), time.perf_counter()
    emit(TrainEvent("start", 0, cfg.iterations))
    gen.train()
    for it in range(cfg.iterations):
        if cancel is not None and cancel.is_set():
            emit(TrainEvent("cancelled", it, cfg.iterations, seconds=time.perf_counter() - start))
            break
        x, y = _batch(pairs, rng, cfg.batch, cfg.crop)
        for g in opt.param_groups:
            g["lr"] = cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * it / cfg.iterations)))
        out = gen(backbone.extract(x, gen.taps), x)
        parts = {"l1": cfg.l1 * (out - y).abs().mean()}
        if cfg.lpips > 0:
            parts["lpips"] = cfg.lpips * sketch_lpips(lpips_model, out, y).mean()
        loss = sum(parts.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses = {"total": float(loss.detach())} | {k: float(v.detach()) for k, v in parts.items()}
        emit(TrainEvent("step", it + 1, cfg.iterations, losses, time.perf_counter() - start))
    else:
        emit(TrainEvent("done", cfg.iterations, cfg.iterations, seconds=time.perf_counter() - start))
    return gen.eval()


def load_prior(backbone: CNNBackbone, work_side: int | None = None,
               folder: str | Path | None = None) -> CNNSketchGenerator | None:
    """The prior for this backbone (a copy to fine-tune, recording this backbone and `work_side`), or None when
    there is none or it was learnt on another backbone (random-init VGG16, the tiny test CNN, other padding): a
    prior only helps the features it was learnt on.

    The whole generator starts from the prior. Tried and not kept (BSDS500, 20 test photos, examples 1 and 2,
    LPIPS mean over XDoG / HED / PiDiNet): a fresh full-resolution head (RGB branch and final fusion) for the
    example to teach the line alone, 0.243 against 0.2425; a lower fine-tuning rate (5e-4), better for the
    contour styles and much worse for XDoG; choosing prior or scratch by training both on half of the example
    and scoring the other half, wrong on one case in five at three times the training time."""
    folder = Path(folder or PRIOR_DIR)
    if not (folder / "config.json").is_file():
        return None
    gen = load_saved(CNNSketchGenerator, folder, "sketch prior")
    try:
        check_compatible(gen.config.backbone, backbone)
    except BadInputError:
        return None
    gen.register_to_config(backbone=backbone.fingerprint, work_side=work_side or backbone.work_side)
    return gen.to(backbone.device)


def _parser() -> argparse.ArgumentParser:
    p = cli.parser("diffsketch_core.style.cnn_prior", __doc__)
    p.add_argument("--bsds", required=True, help="BSDS500 folder (images/ and groundTruth/)")
    p.add_argument("--splits", nargs="+", default=["train", "val"])
    p.add_argument("--exclude", nargs="*", default=["100075", "35058", "159091"],
                   help="photo ids left out (default: the one-shot benchmark's examples)")
    p.add_argument("--out", required=True, help="folder to write the prior to (fp16 safetensors + training.json)")
    p.add_argument("--backbone", default="vgg16")
    p.add_argument("--iterations", type=int, default=PriorConfig.iterations)
    return p


def _main(args: argparse.Namespace) -> int:
    bb = load_cnn_backbone(args.backbone)
    pairs = bsds_pairs(args.bsds, args.splits, args.exclude, bb.work_side)
    cfg = PriorConfig(iterations=args.iterations)
    last: dict[str, float] = {}

    def report(e: TrainEvent) -> None:
        last.update(e.losses)
        if e.kind != "step" or e.iteration % 50 == 0:
            cli.progress(e.iteration, e.total, f"{e.kind} loss {last.get('total', float('nan')):.4f}", e.seconds)

    start = time.perf_counter()
    gen = pretrain(bb, pairs, cfg, on_event=report)
    out = Path(args.out)
    gen.to(torch.float16).save_pretrained(str(out), safe_serialization=True)
    record = {"data": f"BSDS500 {' + '.join(args.splits)} human contours (consensus of the annotators), "
                      f"{len(pairs)} photos at {bb.work_side} px; left out: {', '.join(args.exclude) or 'none'}",
              "backbone": bb.fingerprint | {"source": args.backbone}, "config": asdict(cfg),
              "final_losses": last, "train_seconds": round(time.perf_counter() - start),
              "command": "python -m diffsketch_core.style.cnn_prior " + " ".join(
                  f"--{k.replace('_', '-')} {' '.join(v) if isinstance(v, list) else v}" for k, v in vars(args).items()
                  if k not in ("bsds", "threads")) + " --bsds <BSDS500>"}
    (out / "training.json").write_text(json.dumps(record, indent=1))
    print(out)
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(_parser(), _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
