"""DiffSketching's fine-tuning (its Algorithm 1) for a few of a user's sketch + photo pairs, as a LoRA.

Per iteration, for pair k (in turn): noise the photo's latent to a random timestep t <= t_max, predict the noise
with the LoRA-adapted UNet (prompt-conditioned), take the predicted clean latent x0, decode it and add
- the image identity loss: L1 between the decoded picture and the photo (plus LPIPS when a model is given; the
  paper uses ResNet-50 features fine-tuned on Sketchy, which we do not have),
- the sketch perceptual loss: `SketchLoss` between the picture's extracted sketch and the user's sketch,
- the usual noise-prediction MSE, which keeps the adapted UNet a denoiser.
Only the LoRA's low-rank matrices learn (Adam); the backbone is untouched outside `lora.applied`. A fixed set of
(t, noise) draws measures the loss before and after, the figure that says whether it learned. A progress callback
receives FinetuneEvents; a cancel flag (anything with is_set()) is checked before each iteration.

CLI: python -m diffsketch_core.picture.finetune --pair s1.png p1.jpg [--pair ...] --prompt "a cat" --out cat.safetensors
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import cli
from ..diffusion.backbone import Backbone, load_backbone
from ..diffusion.sampling import split_prediction
from ..errors import BadInputError
from ..images import ImageLike, load_image
from ..perceptual import load_lpips
from .extractor import EXTRACTORS, SketchExtractor, load_extractor
from .lora import LoRA, applied
from .sketch2image import checked_prompt, checked_size
from .sketch_loss import SketchLoss, SketchTarget

MAX_PAIRS = 16


class CancelFlag(Protocol):
    def is_set(self) -> bool: ...


@dataclass
class FinetuneConfig:
    prompt: str = ""
    iterations: int = 200
    lr: float = 1e-4
    rank: int = 4
    resolution: int | None = None  # square side; default the backbone's native size
    t_max: int = 500  # beyond this x0 is too blurry for the perceptual terms to say anything
    denoise: float = 1.0  # loss weights
    identity: float = 1.0
    sketch: float = 1.0
    lpips: float = 0.0  # LPIPS weight, in the identity and the sketch term, when an LPIPS model is given
    eval_draws: int = 4  # fixed (t, noise) draws per pair for the before/after loss
    seed: int = 0


@dataclass
class FinetuneEvent:
    iteration: int
    total: int
    losses: dict[str, float]
    seconds: float


@dataclass
class FinetuneResult:
    lora: LoRA
    iterations: int
    eval_before: float
    eval_after: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cancelled: bool = False


@dataclass
class _Pair:
    photo: torch.Tensor  # (1, 3, S, S) in [0, 1]
    latent: torch.Tensor  # (1, 4, s, s), scaled
    loss: SketchLoss


class Finetuner:
    def __init__(self, backbone: Backbone, pairs: Sequence[tuple[ImageLike, ImageLike]], config: FinetuneConfig,
                 extractor: SketchExtractor, lpips_model: torch.nn.Module | None = None):
        if not pairs:
            raise BadInputError("Fine-tuning needs at least one sketch + photo pair.")
        if len(pairs) > MAX_PAIRS:
            raise BadInputError(f"Fine-tune on at most {MAX_PAIRS} pairs at a time (DiffSketching uses a few), not {len(pairs)}.")
        if config.iterations < 1 or config.lr <= 0 or config.rank < 1:
            raise BadInputError("Iterations and rank must be at least 1 and the learning rate above 0.")
        if config.lpips > 0 and lpips_model is None:
            raise BadInputError("An LPIPS weight needs the LPIPS model (see README, 'Weights').")
        self.bb, self.cfg, self.extractor, self.lpips_model = backbone, config, extractor, lpips_model
        (side, _), self.notes = checked_size(backbone, config.resolution, config.resolution)
        prompt, more = checked_prompt(backbone, config.prompt)
        self.notes += more
        self.cond = backbone.encode_prompt(prompt)
        self.pairs = [self._pair(sketch, photo, side, k) for k, (sketch, photo) in enumerate(pairs)]
        self.lora = LoRA.fresh(backbone.unet, config.rank, seed=config.seed).to(backbone.device)
        self.iteration = 0

    def _pair(self, sketch: ImageLike, photo: ImageLike, side: int, k: int) -> _Pair:
        loaded = load_image(photo)
        img = loaded.image
        if img.size != (side, side):
            if abs(img.width / img.height - 1) > 0.01:
                self.notes.append(f"Photo {k + 1} ({img.width}x{img.height}) was squeezed to {side}x{side}.")
            img = img.resize((side, side), resample=3)  # bicubic
        rgb = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        rgb = rgb.to(self.bb.device, self.bb.dtype)
        target = SketchTarget.load(sketch, (side, side))
        self.notes += [f"Sketch {k + 1}: {n}" for n in target.notes]
        with torch.no_grad():
            vae = self.bb.vae  # an SDXL VAE stays in fp32 under a half-precision UNet
            latent = (vae.encode((rgb * 2 - 1).to(vae.dtype)).latent_dist.mean * self.bb.scaling_factor).to(self.bb.dtype)
        loss = SketchLoss(target, 1.0, self.cfg.lpips, self.lpips_model if self.cfg.lpips > 0 else None)
        return _Pair(rgb.float(), latent, loss.to(self.bb.device))

    def losses(self, pair: _Pair, t: torch.Tensor, noise: torch.Tensor) -> dict[str, torch.Tensor]:
        bb, cfg = self.bb, self.cfg
        a = bb.scheduler.alphas_cumprod.to(bb.device)[t].view(-1, 1, 1, 1).to(bb.dtype)
        zt = a.sqrt() * pair.latent + (1 - a).sqrt() * noise
        with applied(bb.unet, self.lora):
            out = bb.unet(zt, t, **bb.unet_kwargs(self.cond, tuple(zt.shape[-2:]))).sample
        # the denoising loss is on what this UNet predicts (epsilon, or v for SD 2.x 768); x0 through the same rule
        target = bb.scheduler.get_velocity(pair.latent, noise, t) if bb.prediction_type == "v_prediction" else noise
        x0, _ = split_prediction(out, zt, a, bb.prediction_type)
        picture = (bb.vae.decode((x0 / bb.scaling_factor).to(bb.vae.dtype)).sample.float() + 1) / 2
        identity = F.l1_loss(picture, pair.photo)
        if cfg.lpips > 0:
            identity = identity + cfg.lpips * self.lpips_model(picture * 2 - 1, pair.photo * 2 - 1).mean()
        parts = {"denoise": F.mse_loss(out.float(), target.float()), "identity": identity,
                 "sketch": pair.loss(self.extractor(picture)).mean()}
        parts["total"] = cfg.denoise * parts["denoise"] + cfg.identity * parts["identity"] + cfg.sketch * parts["sketch"]
        return parts

    def _draw(self, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.randint(1, self.cfg.t_max + 1, (1,), generator=gen)
        noise = torch.randn(self.pairs[0].latent.shape, generator=gen)
        return t.to(self.bb.device), noise.to(self.bb.device, self.bb.dtype)

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean total loss over fixed draws (the same every call), so before and after compare like with like."""
        gen = torch.Generator().manual_seed(self.cfg.seed + 12345)
        values = [float(self.losses(p, *self._draw(gen))["total"]) for p in self.pairs for _ in range(self.cfg.eval_draws)]
        return float(np.mean(values))

    def run(self, on_event: Optional[Callable[[FinetuneEvent], None]] = None,
            cancel: CancelFlag | None = None) -> FinetuneResult:
        start = time.perf_counter()
        before = self.evaluate()
        opt = torch.optim.Adam(self.lora.parameters(), lr=self.cfg.lr)
        gen = torch.Generator().manual_seed(self.cfg.seed)
        history, cancelled = [], False
        for it in range(self.cfg.iterations):
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            parts = self.losses(self.pairs[it % len(self.pairs)], *self._draw(gen))
            opt.zero_grad(set_to_none=True)
            parts["total"].backward()
            opt.step()
            self.iteration = it + 1
            history.append({k: float(v.detach()) for k, v in parts.items()})
            if on_event is not None:
                on_event(FinetuneEvent(it + 1, self.cfg.iterations, history[-1], time.perf_counter() - start))
        after = self.evaluate()
        return FinetuneResult(self.lora, self.iteration, before, after, time.perf_counter() - start, history,
                              list(self.notes), cancelled)


# ---------------------------------------------------------------- command line

def _parser() -> argparse.ArgumentParser:
    p = cli.parser("diffsketch_core.picture.finetune", __doc__)
    p.add_argument("--pair", nargs=2, action="append", metavar=("SKETCH", "PHOTO"), required=True,
                   help="a sketch and the photo it shows (repeat for a few pairs)")
    p.add_argument("--prompt", default="", help="what the photos show")
    p.add_argument("--out", required=True, help="the LoRA file to write (.safetensors)")
    p.add_argument("--backbone", default=None, help="SD 1.x / 2.x / XL hub id or folder (default $DIFFSKETCH_SD_MODEL); tiny = demo")
    p.add_argument("--extractor", choices=EXTRACTORS, default="hed")
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--rank", type=int, default=4)
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--lpips", type=cli.non_negative, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    return p


def _main(args: argparse.Namespace) -> None:
    bb = load_backbone(args.backbone)
    if bb.is_demo:
        cli.note("random-weight backbone: the pipeline runs, the LoRA means nothing")
    cfg = FinetuneConfig(args.prompt, args.iterations, args.lr, args.rank, args.resolution, lpips=args.lpips, seed=args.seed)
    tuner = Finetuner(bb, [tuple(p) for p in args.pair], cfg, load_extractor(args.extractor, bb.device),
                      load_lpips(bb.device) if args.lpips > 0 else None)
    for n in tuner.notes:
        cli.note(n)
    res = tuner.run(lambda e: cli.progress(e.iteration, e.total, f"loss {e.losses['total']:.4f}", e.seconds))
    path = res.lora.save(args.out)
    print(f"wrote {path}: {res.iterations} iterations, loss on fixed draws {res.eval_before:.4f} -> {res.eval_after:.4f}, "
          f"{res.seconds:.0f} s")


def main(argv: list[str] | None = None) -> int:
    return cli.run(_parser(), _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
