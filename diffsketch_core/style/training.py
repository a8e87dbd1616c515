"""One-shot style training: one photo + the artist's sketch of it -> a DiffSketch generator.

Per iteration (DiffSketch section 5 with DESIGN.md's fixes and speed plan):
1. the CDST condition of the iteration (example caption -> prior samples);
2. a training image drawn by SD from it (DDIM, few steps, guidance), generated `gen_batch` at a time;
3. its features by noise-and-extract, the same path as the example's (computed once) and as inference;
4. S_rec = G(example), S_i = G(sample); LPIPS + L1 + CLIP on the example, directional CLIP losses on the sample;
5. an Adam step.
A progress callback receives TrainEvents (every iteration; previews every `preview_every`); a cancel flag
(anything with is_set(), e.g. threading.Event) is checked before each iteration, so Stop takes effect within one.

CLI: python -m diffsketch_core.style.training --photo p.jpg --sketch s.png --out styles/mine [--backbone tiny]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

import numpy as np
import torch
from PIL import Image

from .. import cli
from ..diffusion.backbone import Backbone, load_backbone
from .conditions import CDSTConditions, ConditionPrior, prior_for
from ..errors import BadInputError
from ..diffusion.features import DEFAULT_TIMESTEPS, FeatureBundle, FeatureExtractor, UNetFeatures, VAEFeatures, image_to_tensor
from .generator import SketchGenerator, generator_for
from ..images import ImageLike, load_image
from ..perceptual import ClipImageEncoder, load_clip, load_lpips
from .losses import DiffSketchLoss, LossWeights
from ..diffusion.sampling import ddim_sample
from ..diffusion.timesteps import read_timesteps
from .sketches import load_sketch
from .store import Style

MIN_SIDE = 64


class CancelFlag(Protocol):
    def is_set(self) -> bool: ...


@dataclass
class TrainConfig:
    iterations: int = 1200
    horizon: int = 1000  # CDST: iterations over which the example's condition fades out
    lr: float = 1e-4
    resolution: int | None = None  # square training size; default: the backbone's native size
    sample_steps: int = 20  # DDIM steps per CDST image
    guidance: float = 5.0
    gen_batch: int = 4  # CDST images per SD call
    preview_every: int = 50
    seed: int = 50
    timesteps: tuple[int, ...] = DEFAULT_TIMESTEPS
    max_batch: int = 26  # UNet rows per forward
    weights: LossWeights = field(default_factory=LossWeights)


@dataclass
class TrainEvent:
    kind: str  # "start" | "step" | "preview" | "done" | "cancelled"
    iteration: int
    total: int
    losses: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    preview: dict[str, np.ndarray] | None = None  # "example" and "sample" sketches, HxW uint8
    notes: list[str] = field(default_factory=list)


def _slice(bundle: FeatureBundle, i: int) -> FeatureBundle:
    u = bundle.unet
    unet = UNetFeatures({k: v[i:i + 1] for k, v in u.maps.items()}, u.timesteps, u.branches)
    vae = VAEFeatures({k: v[i:i + 1] for k, v in bundle.vae.maps.items()}, bundle.vae.rgb[i:i + 1])
    return FeatureBundle(unet, vae, bundle.latents[i:i + 1])


def _to_uint8(sketch: torch.Tensor) -> np.ndarray:
    return (sketch[0, 0].detach().float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)


class OneShotTrainer:
    def __init__(self, backbone: Backbone, photo: ImageLike, sketch: ImageLike, caption: str = "",
                 config: TrainConfig | None = None, clip: ClipImageEncoder | None = None,
                 lpips_model: torch.nn.Module | None = None, generator: SketchGenerator | None = None,
                 prior: ConditionPrior | None = None):
        self.bb, self.cfg = backbone, config or TrainConfig()
        self.caption = caption.strip()
        res = self.cfg.resolution or backbone.resolution
        multiple = backbone.vae_scale_factor * 2 ** (len(backbone.unet.config.block_out_channels) - 1)
        if res % multiple:
            raise BadInputError(f"Training resolution must be a multiple of {multiple}, got {res}.")
        self.res = res
        loaded = load_image(photo)
        self.notes = list(loaded.notes)
        if min(loaded.image.size) < MIN_SIDE:
            raise BadInputError(f"The photo is {loaded.image.size[0]}x{loaded.image.size[1]}; at least {MIN_SIDE} px a side is needed.")
        target, sketch_notes = load_sketch(sketch, size=loaded.image.size)
        self.notes += sketch_notes
        dev = backbone.device
        # both stretched to the square training size; inference does the same and resizes back
        self.photo = image_to_tensor(loaded.image, (res, res)).to(dev)
        target_img = Image.fromarray((target * 255).astype(np.uint8), "L").resize((res, res), Image.Resampling.LANCZOS)
        self.target = torch.from_numpy(np.asarray(target_img, np.float32) / 255.0)[None, None].to(dev)
        self.extractor = FeatureExtractor(backbone, timesteps=self.cfg.timesteps, max_batch=self.cfg.max_batch)
        self.uncond = backbone.encode_prompt("")
        self.example_cond = backbone.encode_prompt(self.caption)
        self.example = self.extractor.extract(self.photo, self.example_cond, self.uncond, seed=self.cfg.seed)
        self.generator = (generator or generator_for(backbone, self.cfg.timesteps)).to(dev)
        self.clip = (clip or load_clip(device=dev)).to(dev)
        if self.cfg.weights.lpips > 0 and lpips_model is None:
            lpips_model = load_lpips(dev)
        self.loss = DiffSketchLoss(self.clip, lpips_model if self.cfg.weights.lpips > 0 else None, self.cfg.weights)
        photo01 = (self.photo + 1) / 2
        self.e_s_ex, self.e_i_ex = self.loss.embed_example(self.target, photo01)
        self.conditions = CDSTConditions(prior or prior_for(backbone), self.example_cond[0], self.cfg.horizon, self.cfg.seed)
        self.opt = torch.optim.Adam(self.generator.parameters(), lr=self.cfg.lr)
        self._queue: list[FeatureBundle] = []
        self.iteration = 0

    def _refill(self) -> None:
        """Draw the next `gen_batch` CDST images and extract their features in one batched pass."""
        n = self.cfg.gen_batch
        cond = torch.cat([self.conditions(self.iteration + k) for k in range(n)]).to(self.bb.device, self.bb.dtype)
        latent = self.res // self.bb.vae_scale_factor
        z0 = ddim_sample(self.bb, cond, self.uncond, steps=self.cfg.sample_steps, guidance=self.cfg.guidance,
                         seed=self.cfg.seed + self.iteration, latent_hw=(latent, latent))
        bundle = FeatureBundle(self.extractor.unet_features(z0, cond, self.uncond, seed=self.cfg.seed + self.iteration),
                               self.extractor.vae_features(z0), z0)
        self._queue = [_slice(bundle, k) for k in range(n)]

    def step(self) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
        if not self._queue:
            self._refill()
        sample = self._queue.pop(0)
        self.generator.train()
        s_rec = self.generator(self.example)
        s_i = self.generator(sample)
        image_i = (sample.vae.rgb.float().clamp(-1, 1) + 1) / 2
        parts = self.loss(s_rec, self.target, self.e_s_ex, self.e_i_ex, s_i, image_i)
        self.opt.zero_grad(set_to_none=True)
        parts["total"].backward()
        self.opt.step()
        self.iteration += 1
        return {k: float(v.detach()) for k, v in parts.items()}, s_rec, s_i

    @torch.no_grad()
    def reconstruction_loss(self) -> float:
        """L1 + LPIPS + CLIP terms on the example only (what 'the example is learned' means)."""
        self.generator.eval()
        s_rec = self.generator(self.example)
        return float(self.loss(s_rec, self.target, self.e_s_ex, self.e_i_ex)["total"])

    def run(self, on_event: Optional[Callable[[TrainEvent], None]] = None, cancel: CancelFlag | None = None) -> Style:
        emit = on_event or (lambda e: None)
        total, start = self.cfg.iterations, time.perf_counter()
        emit(TrainEvent("start", self.iteration, total, notes=self.notes))
        while self.iteration < total:
            if cancel is not None and cancel.is_set():
                emit(TrainEvent("cancelled", self.iteration, total, seconds=time.perf_counter() - start))
                return self.style()
            losses, s_rec, s_i = self.step()
            elapsed = time.perf_counter() - start
            preview = None
            if self.iteration % self.cfg.preview_every == 0 or self.iteration == total:
                preview = {"example": _to_uint8(s_rec), "sample": _to_uint8(s_i)}
            emit(TrainEvent("preview" if preview else "step", self.iteration, total, losses, elapsed, preview))
        emit(TrainEvent("done", self.iteration, total, seconds=time.perf_counter() - start))
        return self.style()

    def style(self) -> Style:
        meta = {"iterations": self.iteration, "backbone_is_demo": self.bb.is_demo}
        return Style(self.generator.eval(), self.caption, self.res, meta)


def _parser() -> argparse.ArgumentParser:
    p = cli.parser("diffsketch_core.style.training", __doc__)
    p.add_argument("--photo", required=True)
    p.add_argument("--sketch", required=True)
    p.add_argument("--out", required=True, help="style folder to write")
    p.add_argument("--caption", default="", help="what the photo shows (improves CDST's first samples)")
    p.add_argument("--backbone", default=None, help="hub id, local dir, or 'tiny' (default $DIFFSKETCH_SD_MODEL)")
    p.add_argument("--clip", default=None, help="CLIP hub id, local dir or 'tiny' (default $DIFFSKETCH_CLIP_MODEL)")
    p.add_argument("--iterations", type=int, default=1200)
    p.add_argument("--horizon", type=int, default=None, help="CDST horizon H (default: 5/6 of the iterations)")
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--sample-steps", type=int, default=20)
    p.add_argument("--gen-batch", type=int, default=4)
    p.add_argument("--timesteps", default=None, help="JSON file written by diffsketch_core.diffusion.timesteps")
    return p


def _report(e: TrainEvent) -> None:
    if e.kind in ("preview", "done", "cancelled"):
        loss = f" loss {e.losses['total']:.4f}" if e.losses else ""
        cli.progress(e.iteration, e.total, f"{e.kind}{loss}", e.seconds)


def _main(args: argparse.Namespace) -> int:
    bb = load_backbone(args.backbone)
    cfg = TrainConfig(iterations=args.iterations, horizon=args.horizon or max(1, args.iterations * 5 // 6),
                      resolution=args.resolution, sample_steps=args.sample_steps, gen_batch=args.gen_batch)
    if args.timesteps:
        cfg.timesteps = read_timesteps(args.timesteps)
    trainer = OneShotTrainer(bb, args.photo, args.sketch, args.caption, cfg, clip=load_clip(args.clip, bb.device))
    for note in trainer.notes:
        cli.note(note)
    trainer.run(_report).save(args.out)
    print(args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(_parser(), _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
