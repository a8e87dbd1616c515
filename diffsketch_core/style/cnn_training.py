"""One-shot style training on CNN features (issue 13): ONE photo + its sketch -> a CNNSketchGenerator, on a CPU.

The generator starts from the sketch prior (style/cnn_prior.py: pretrained on many photos' human contours) when
one fits the backbone, else from random weights (`prior=False` / `--no-prior` asks for that).

Per iteration:
1. a batch of augmented views of the pair (style/augment.py) from a bank whose backbone features are computed
   once per view (the backbone is frozen), one view of the bank replaced every `refresh_every` iterations;
2. G(views) against the views' sketches: L1 + LPIPS(alex) as in DiffSketch, plus CLIP similarity when a CLIP
   encoder is given; with unlabeled photos (no sketches: photos of the kind the style will draw), a consistency
   term: the sketch of a photo and, mirrored back, the sketch of its mirrored, colour-jittered copy should look
   alike (LPIPS between the two). One example cannot say which of a new photo's faint edges to draw; what the
   style draws only from one side of a mirror is guesswork, and this term removes it. Screened (20 BSDS500 test
   photos, example 1, 20 unlabeled BSDS500 train photos, LPIPS XDoG / HED / PiDiNet): without 0.167 / 0.246 /
   0.231, with this term at 0.3 0.162 / 0.236 / 0.214; as L1 instead of LPIPS, at 1.0 HED 0.216 but PiDiNet
   collapsed to a near-blank page (0.464), at 0.1 0.161 / 0.238 / 0.228; colour jitter alone (L1, 1.0) 0.171 /
   0.229 / 0.249. On the benchmark (50 test photos) it helps example 1 in every style, but over the 9 runs it is
   a wash (README), so it is used only when extra photos are given;
3. an Adam step (cosine-decayed learning rate).
Progress and previews are the SD trainer's TrainEvents; a cancel flag is checked before each iteration.

CLI: python -m diffsketch_core.style.cnn_training --photo p.jpg --sketch s.png --out styles/mine [--backbone vgg16]
     [--runs 3]   (the weight average of 3 runs: style/soup.py)
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import cli
from ..diffusion.cnn import CNNBackbone, load_cnn_backbone
from ..errors import BadInputError, check_settings
from ..images import ImageLike, load_image
from ..perceptual import ClipImageEncoder, load_lpips, sketch_lpips
from .augment import AugmentConfig, augment_pair, photometric, view_side
from .cnn_generator import CNNSketchGenerator, cnn_generator_for
from .cnn_prior import load_prior
from .sketches import load_sketch
from .soup import SoupTrainer
from .store import Style
from .training import CancelFlag, TrainEvent, print_progress

MIN_SIDE = 64
MAX_UNLABELED = 32  # extra photos kept with their features (~8 MB each); one is used per iteration
MIN_INK = 0.002  # fraction of the sheet with clear lines below which there is nothing to learn
CNN_KIND = "cnn"
MIN_WORK_SIDE, MAX_WORK_SIDE = 64, 512  # the backbone's reading size (default 256): the view bank's features grow
# with its square, several GB past 512 (100,000 px took the machine's 24 GB and was killed)


@dataclass
class CNNTrainConfig:
    iterations: int = 300
    lr: float = 2e-3
    batch: int = 4
    bank: int = 32  # augmented views kept with their features
    refresh_every: int = 6  # replace one view of the bank every this many iterations (0: never)
    preview_every: int = 25
    seed: int = 50
    work_side: int | None = None  # long side the backbone reads photos at (default: the backbone's)
    l1: float = 2.0  # DiffSketch's L1 : LPIPS ratio (30 : 15)
    lpips: float = 1.0
    clip: float = 1.0  # only when a CLIP encoder is given
    consistency: float = 0.3  # only with unlabeled photos (see the module's docstring)
    prior: bool = True  # start from the shipped sketch prior (style/cnn_prior.py) when it fits the backbone
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self):
        check_settings("Training settings", [  # 0 iterations: the start itself (the benchmark's prior-only row)
            (self.iterations >= 0, f"iterations must not be negative, not {self.iterations}"),
            (self.lr > 0, f"lr must be above 0, not {self.lr}"),
            (min(self.batch, self.bank, self.preview_every) >= 1, "batch, bank and preview_every must be at least 1"),
            (self.refresh_every >= 0, "refresh_every must not be negative"),
            (self.work_side is None or MIN_WORK_SIDE <= self.work_side <= MAX_WORK_SIDE,
             f"the work side must be {MIN_WORK_SIDE} to {MAX_WORK_SIDE} px, not {self.work_side}")])


def _tensor(img: Image.Image) -> torch.Tensor:
    arr = np.asarray(img, np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)[None] if arr.ndim == 3 else torch.from_numpy(arr)[None, None]


def _to_uint8(sketch: torch.Tensor) -> np.ndarray:
    return (sketch[0, 0].detach().float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)


def check_pair(photo: Image.Image, sketch_rgb: Image.Image, target: np.ndarray) -> list[str]:
    """Refuse a sketch with (almost) no lines; warn when the sketch looks like a photo. Returns notes."""
    notes = []
    if float((target < 0.75).mean()) < MIN_INK:
        raise BadInputError("The sketch is almost blank (fewer than 0.2% of its pixels are lines): there is "
                            "nothing to learn. Upload a sketch with its lines drawn dark on white.")
    hsv = np.asarray(sketch_rgb.convert("HSV"), np.float32) / 255.0
    grey_photo = np.asarray(photo.convert("L").resize(sketch_rgb.size), np.float32)
    grey_sketch = np.asarray(sketch_rgb.convert("L"), np.float32)
    corr = float(np.corrcoef(grey_photo.ravel(), grey_sketch.ravel())[0, 1]) if grey_sketch.std() > 0 else 0.0
    if float((hsv[..., 1] * hsv[..., 2]).mean()) > 0.12 or corr > 0.9:
        notes.append("The sketch looks like a photo (it has colour, or follows the photo's tones closely); the "
                     "style will learn to copy it. Use a drawing of the photo for a sketch style.")
    return notes


class CNNOneShotTrainer:
    def __init__(self, backbone: CNNBackbone, photo: ImageLike, sketch: ImageLike,
                 config: CNNTrainConfig | None = None, lpips_model: torch.nn.Module | None = None,
                 clip: ClipImageEncoder | None = None, generator: CNNSketchGenerator | None = None,
                 unlabeled: list[ImageLike] = (), invert: str | bool | None = "auto"):
        self.bb, self.cfg = backbone, config or CNNTrainConfig()
        self.rng = np.random.default_rng(self.cfg.seed)
        torch.manual_seed(self.cfg.seed)
        loaded = load_image(photo)
        self.notes = list(loaded.notes)
        w, h = loaded.image.size
        if min(w, h) < MIN_SIDE:
            raise BadInputError(f"The photo is {w}x{h}; at least {MIN_SIDE} px a side is needed.")
        sketch_img = load_image(sketch).image
        sw, sh = sketch_img.size
        if abs(math.log((sw / sh) / (w / h))) > 0.02:
            self.notes.append(f"The sketch ({sw}x{sh}) and the photo ({w}x{h}) have different shapes: the sketch "
                              "was stretched to the photo's (draw over the same framing for the best result).")
        target, sketch_notes = load_sketch(sketch, size=loaded.image.size, invert=invert)
        self.notes += [n for n in sketch_notes if not n.startswith("Sketch resized") and "to RGB" not in n]
        self.notes += check_pair(loaded.image, sketch_img.resize(loaded.image.size), target)
        self.work_side = self.cfg.work_side or backbone.work_side
        size = backbone.work_size(w, h, self.work_side)
        self.photo = loaded.image.resize(size, Image.Resampling.LANCZOS)
        self.sketch = Image.fromarray((target * 255).round().astype(np.uint8), "L").resize(size, Image.Resampling.LANCZOS)
        self.example_rgb = _tensor(self.photo)
        self.example_target = _tensor(self.sketch)
        self.example = backbone.extract(self.example_rgb)
        prior = load_prior(backbone, self.work_side) if generator is None and self.cfg.prior else None
        self.prior = prior is not None
        self.generator = generator or prior or cnn_generator_for(backbone, work_side=self.work_side)
        self.taps = self.generator.taps
        self.side = view_side(self.photo.size, self.cfg.augment)
        # a short run needs no more views than it will look at
        self.views = [self._view() for _ in range(min(self.cfg.bank, max(2, self.cfg.iterations * self.cfg.batch)))]
        self.unlabeled = []
        for source in list(unlabeled)[:MAX_UNLABELED]:
            try:
                self.unlabeled.append(self._unlabeled_view(source))
            except BadInputError as exc:  # one unreadable extra photo must not cost the training
                self.notes.append(f"An extra photo was skipped: {exc}")
        if len(unlabeled) > MAX_UNLABELED:
            self.notes.append(f"Only the first {MAX_UNLABELED} of {len(unlabeled)} extra photos were used.")
        if self.cfg.lpips > 0 and lpips_model is None:
            lpips_model = load_lpips()
        self.lpips = lpips_model if self.cfg.lpips > 0 else None
        self.clip = clip if self.cfg.clip > 0 else None
        self.opt = torch.optim.Adam(self.generator.parameters(), lr=self.cfg.lr)
        self.iteration = 0

    def _view(self) -> tuple[dict, torch.Tensor, torch.Tensor]:
        p, k = augment_pair(self.photo, self.sketch, self.rng, self.cfg.augment, self.side)
        rgb = _tensor(p)
        return self._features(rgb), rgb, _tensor(k)

    def _unlabeled_view(self, source: ImageLike) -> tuple[dict, torch.Tensor, dict, torch.Tensor]:
        img = load_image(source).image
        img = img.resize(self.bb.work_size(*img.size, self.work_side), Image.Resampling.LANCZOS)
        mirrored = photometric(img, self.rng, self.cfg.augment).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        a, b = _tensor(img), _tensor(mirrored)
        return self._features(a), a, self._features(b), b

    def _features(self, rgb: torch.Tensor) -> dict[str, torch.Tensor]:
        return {t: v.half() for t, v in self.bb.extract(rgb, self.taps).items()}  # fp16 halves their memory

    def _losses(self, out: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = {"l1": self.cfg.l1 * (out - target).abs().mean()}
        if self.lpips is not None:
            parts["lpips"] = self.cfg.lpips * sketch_lpips(self.lpips, out, target).mean()
        if self.clip is not None:
            e_out = F.normalize(self.clip(out.repeat(1, 3, 1, 1)), dim=-1)
            e_tgt = F.normalize(self.clip(target.repeat(1, 3, 1, 1)), dim=-1)
            parts["clip"] = self.cfg.clip * (1 - (e_out * e_tgt).sum(-1)).mean()
        return parts

    def _distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS between two sketches (L1 when LPIPS is off): as L1, the consistency term pulled sparse styles
        towards a blank page."""
        if self.lpips is None:
            return (x - y).abs().mean()
        return sketch_lpips(self.lpips, x, y).mean()

    def _batch(self) -> tuple[dict, torch.Tensor, torch.Tensor]:
        idx = self.rng.choice(len(self.views), size=min(self.cfg.batch, len(self.views)), replace=False)
        feats = {t: torch.cat([self.views[i][0][t] for i in idx]).float() for t in self.taps}
        return feats, torch.cat([self.views[i][1] for i in idx]), torch.cat([self.views[i][2] for i in idx])

    def step(self) -> dict[str, float]:
        cfg = self.cfg
        if cfg.refresh_every and self.iteration and self.iteration % cfg.refresh_every == 0:
            self.views[self.iteration // cfg.refresh_every % len(self.views)] = self._view()
        for g in self.opt.param_groups:  # cosine from lr to lr / 10
            g["lr"] = cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * self.iteration / max(1, cfg.iterations))))
        self.generator.train()
        feats, rgb, target = self._batch()
        parts = self._losses(self.generator(feats, rgb), target)
        if self.unlabeled and cfg.consistency > 0:
            fa, a, fb, b = self.unlabeled[self.iteration % len(self.unlabeled)]
            mirrored_back = self.generator(fb, b).flip(-1)
            parts["consistency"] = cfg.consistency * self._distance(self.generator(fa, a), mirrored_back)
        total = sum(parts.values())
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        self.opt.step()
        self.iteration += 1
        return {"total": float(total.detach())} | {k: float(v.detach()) for k, v in parts.items()}

    @torch.no_grad()
    def example_loss(self) -> float:
        """The loss on the whole, unaugmented example (what 'the example is learned' means)."""
        self.generator.eval()
        out = self.generator(self.example, self.example_rgb)
        return float(sum(self._losses(out, self.example_target).values()))

    @torch.no_grad()
    def previews(self) -> dict[str, np.ndarray]:
        self.generator.eval()
        shown = {"example": _to_uint8(self.generator(self.example, self.example_rgb))}
        if self.unlabeled:
            fa, a, _, _ = self.unlabeled[0]
            shown["sample"] = _to_uint8(self.generator(fa, a))
        else:
            feats, rgb, _ = self.views[0]
            shown["sample"] = _to_uint8(self.generator({t: v.float() for t, v in feats.items()}, rgb))
        return shown

    def run(self, on_event: Optional[Callable[[TrainEvent], None]] = None, cancel: CancelFlag | None = None) -> Style:
        emit = on_event or (lambda e: None)
        total, start = self.cfg.iterations, time.perf_counter()
        emit(TrainEvent("start", self.iteration, total, notes=self.notes))
        while self.iteration < total:
            if cancel is not None and cancel.is_set():
                emit(TrainEvent("cancelled", self.iteration, total, seconds=time.perf_counter() - start))
                return self.style()
            losses = self.step()
            preview = None
            if self.iteration % self.cfg.preview_every == 0 or self.iteration == total:
                preview = self.previews()
            emit(TrainEvent("preview" if preview else "step", self.iteration, total, losses,
                            time.perf_counter() - start, preview))
        emit(TrainEvent("done", self.iteration, total, seconds=time.perf_counter() - start))
        return self.style()

    def style(self) -> Style:
        meta = {"iterations": self.iteration, "backbone_is_demo": self.bb.is_demo,
                "prior": "cnn_sketch_prior" if self.prior else None, "unlabeled_photos": len(self.unlabeled)}
        return Style(self.generator.eval(), "", self.work_side, meta, kind=CNN_KIND)


def cnn_trainer(backbone: CNNBackbone, photo: ImageLike, sketch: ImageLike, config: CNNTrainConfig | None = None,
                runs: int = 1, **kwargs) -> CNNOneShotTrainer | SoupTrainer:
    """One fine-tune (runs == 1), or the weight average of `runs` of them (style/soup.py), seeds config.seed,
    config.seed + 1, ..."""
    config = config or CNNTrainConfig()
    if runs == 1:
        return CNNOneShotTrainer(backbone, photo, sketch, config, **kwargs)
    loaded = {}  # later runs reuse the first run's LPIPS network instead of loading it again

    def make(seed: int, start: torch.nn.Module | None) -> CNNOneShotTrainer:
        given = {"generator": start} if start is not None else {}
        trainer = CNNOneShotTrainer(backbone, photo, sketch, replace(config, seed=seed),
                                    **(kwargs | loaded | given))
        loaded.setdefault("lpips_model", trainer.lpips)
        return trainer

    return SoupTrainer(make, runs, config.iterations, config.seed)


def _parser() -> argparse.ArgumentParser:
    p = cli.parser("diffsketch_core.style.cnn_training", __doc__)
    p.add_argument("--photo", required=True)
    p.add_argument("--sketch", required=True)
    p.add_argument("--out", required=True, help="style folder to write")
    p.add_argument("--backbone", default="vgg16", help="'vgg16' (default), a VGG16 safetensors file, "
                   "'vgg16-random' or 'tiny-cnn'")
    p.add_argument("--iterations", type=int, default=CNNTrainConfig.iterations)
    p.add_argument("--work-side", type=int, default=None, help="long side the backbone reads photos at (256)")
    p.add_argument("--unlabeled", nargs="*", default=[], help="extra photos (no sketches) for the consistency term")
    p.add_argument("--no-prior", action="store_true", help="start from random weights, not the sketch prior")
    p.add_argument("--runs", type=int, default=1, help="training runs averaged into the style (a model soup, "
                   "style/soup.py; N times the training)")
    return p


def _main(args: argparse.Namespace) -> int:
    if args.iterations < 1:
        raise BadInputError(f"--iterations must be at least 1, not {args.iterations}.")
    cfg = CNNTrainConfig(iterations=args.iterations, work_side=args.work_side, prior=not args.no_prior)
    bb = load_cnn_backbone(args.backbone)
    trainer = cnn_trainer(bb, args.photo, args.sketch, cfg, args.runs, unlabeled=args.unlabeled)
    for note in trainer.notes:
        cli.note(note)
    trainer.run(print_progress).save(args.out)
    print(Path(args.out))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(_parser(), _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
