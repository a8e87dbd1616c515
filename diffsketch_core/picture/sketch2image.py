"""Sketch -> picture: Stable Diffusion 1.x + a prompt + the user's sketch -> pictures that keep the sketch's lines.

Two ways of steering, which combine:
(a) a scribble/lineart ControlNet (`controlnet.load_controlnet`), fed the sketch as white lines on black;
(b) DiffSketching's sketch guidance: at the steps inside [guide_start, guide_end) (fractions of the schedule),
    decode the predicted clean latent x0, extract its sketch with a differentiable extractor (HED), measure the
    sketch loss to the user's sketch (chamfer and/or LPIPS, `sketch_loss`) and step x0 against its gradient. The
    step is taken on x0 and the DDIM update reuses the predicted noise (as manifold-preserving guidance does), so
    the whole correction reaches the next latent; it is normalised per picture, so `sketch_scale` is the step in
    latent standard deviations x 0.1 whatever the loss's magnitude.
`strength` < 1 starts from the sketch itself noised part-way (SDEdit) instead of pure noise.
Our own DDIM loop (eta 0, the backbone's schedule) so every step can be guided, counted and cancelled.

CLI: python -m diffsketch_core.picture.sketch2image --sketch s.png --prompt "a cat" --out cat.png [--backbone tiny]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Protocol

import numpy as np
import torch
from diffusers import DDIMScheduler
from PIL import Image

from .. import cli
from ..diffusion.backbone import Backbone, load_backbone
from ..diffusion.sampling import initial_noise, split_prediction
from ..errors import BadInputError
from ..images import ImageLike
from ..perceptual import load_lpips
from .controlnet import ControlNet, load_controlnet
from .extractor import EXTRACTORS, SketchExtractor, load_extractor
from .lora import LoRA, applied
from .sketch_loss import SketchLoss, SketchTarget

GUIDE_STEP = 0.1  # latent standard deviations per guided step at sketch_scale 1
MAX_SIDE = 2048
MAX_COUNT = 8


class CancelFlag(Protocol):
    def is_set(self) -> bool: ...


@dataclass
class PictureConfig:
    prompt: str = ""
    negative_prompt: str = ""
    steps: int = 30
    cfg: float = 7.5  # classifier-free guidance; <= 1 turns it off (one UNet row per picture instead of two)
    seed: int = 0
    count: int = 1
    width: int | None = None  # None: the backbone's native size
    height: int | None = None
    strength: float = 1.0  # 1: from pure noise; less: from the sketch noised to that fraction of the schedule
    control_scale: float = 1.0  # ControlNet residual weight (when a ControlNet is given)
    sketch_scale: float = 0.0  # DiffSketching sketch guidance; 0 = off
    guide_start: float = 0.0  # guided steps: this fraction of the schedule ...
    guide_end: float = 0.7  # ... up to (not including) this one; the last steps only add detail
    chamfer: float = 1.0  # sketch-loss weights
    lpips: float = 0.0


@dataclass
class Cost:
    unet_calls: int = 0  # each call runs 2 rows per picture with classifier-free guidance, 1 without
    controlnet_calls: int = 0
    vae_decodes: int = 0  # differentiable decodes of x0 for guidance, plus the final decode
    extractor_backwards: int = 0
    seconds: float = 0.0  # all of it; of which:
    unet_seconds: float = 0.0
    controlnet_seconds: float = 0.0
    guidance_seconds: float = 0.0  # decode x0, extract its sketch, the loss and the backward pass


@dataclass
class PictureEvent:
    step: int
    total: int
    seconds: float
    guided: bool
    sketch_loss: float | None = None


@dataclass
class PictureResult:
    images: list[Image.Image]
    size: tuple[int, int]
    cost: Cost
    notes: list[str] = field(default_factory=list)
    sketches: list[Image.Image] = field(default_factory=list)  # each picture's own extracted sketch
    sketch_loss: list[float] = field(default_factory=list)  # of each picture's sketch to the user's
    cancelled: bool = False


# ---------------------------------------------------------------- input checks

def checked_size(backbone: Backbone, width: int | None, height: int | None) -> tuple[tuple[int, int], list[str]]:
    """(W, H) rounded to the VAE's multiple (8), with a note when rounded."""
    native = backbone.resolution
    w, h = int(width or native), int(height or native)
    if min(w, h) < 8 or max(w, h) > MAX_SIDE:
        raise BadInputError(f"Pictures are 8 to {MAX_SIDE} pixels a side; {w}x{h} was asked for.")
    m = backbone.vae_scale_factor
    rw, rh = max(m, round(w / m) * m), max(m, round(h / m) * m)
    notes = [] if (rw, rh) == (w, h) else [f"Size {w}x{h} rounded to {rw}x{rh} (Stable Diffusion needs multiples of {m})."]
    return (rw, rh), notes


def checked_prompt(backbone: Backbone, prompt: str, what: str = "prompt") -> tuple[str, list[str]]:
    """The prompt the text encoder will read, with a note when it is cut to the tokenizer's limit."""
    tok = backbone.tokenizer
    ids = tok(prompt or "", truncation=False).input_ids
    limit = tok.model_max_length
    if len(ids) <= limit:
        return prompt or "", []
    kept = tok.decode(ids[1:limit - 1], skip_special_tokens=True).strip()
    return kept, [f"The {what} is {len(ids) - 2} tokens long and the text encoder reads {limit - 2}: it was cut "
                  f"after \"...{kept[-40:]}\"."]


def _config_errors(cfg: PictureConfig) -> None:
    if not 1 <= cfg.steps <= 1000:
        raise BadInputError(f"Steps must be 1 to 1000, got {cfg.steps}.")
    if not 1 <= cfg.count <= MAX_COUNT:
        raise BadInputError(f"Make 1 to {MAX_COUNT} pictures at a time, not {cfg.count}.")
    if not 0.0 < cfg.strength <= 1.0:
        raise BadInputError(f"Strength must be above 0 and at most 1, got {cfg.strength}.")
    if cfg.sketch_scale < 0 or cfg.control_scale < 0:
        raise BadInputError("Steering scales cannot be negative.")
    if cfg.cfg < 0 or cfg.lpips < 0:  # a negative weight pushes away from the prompt or the sketch
        raise BadInputError(f"The guidance scale and the LPIPS weight cannot be negative (got {cfg.cfg} and "
                            f"{cfg.lpips}).")


# ---------------------------------------------------------------- the sampler

class _Sampler:
    """One picture batch: the prompt embeddings, the ControlNet input and the counting of every network call."""

    def __init__(self, backbone: Backbone, cfg: PictureConfig, cond, uncond, control: ControlNet | None,
                 control_image: torch.Tensor | None, cost: Cost):
        self.bb, self.cfg, self.cost = backbone, cfg, cost
        b = cfg.count
        self.cfg_on = cfg.cfg > 1.0
        self.embeds = torch.cat([uncond.expand(b, -1, -1), cond.expand(b, -1, -1)]) if self.cfg_on else cond.expand(b, -1, -1)
        self.control = control
        if control is not None:
            img = control_image.to(backbone.device, backbone.dtype).expand(b, -1, -1, -1)
            self.control_image = torch.cat([img, img]) if self.cfg_on else img

    @torch.no_grad()
    def predict(self, latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x = torch.cat([latents, latents]) if self.cfg_on else latents
        extra = {}
        cond = self.bb.unet_kwargs(self.embeds, tuple(latents.shape[-2:]))  # SDXL: pooled embedding and time ids too
        started = time.perf_counter()
        if self.control is not None:
            down, mid = self.control.model(x, t, **cond, controlnet_cond=self.control_image,
                                           conditioning_scale=self.cfg.control_scale, return_dict=False)
            extra = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
            self.cost.controlnet_calls += 1
            self.cost.controlnet_seconds += _synced() - started
        started = time.perf_counter()
        pred = self.bb.unet(x, t, **cond, **extra).sample  # the model's output: epsilon or v (split_prediction)
        self.cost.unet_calls += 1
        self.cost.unet_seconds += _synced() - started
        if self.cfg_on:
            u, c = pred.chunk(2)
            pred = u + self.cfg.cfg * (c - u)
        return pred

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> RGB in about [0, 1] (not clamped: clamping would cut the guidance gradient)."""
        self.cost.vae_decodes += 1
        vae = self.bb.vae  # SDXL's stays in fp32
        return (vae.decode(x0.to(vae.dtype) / self.bb.scaling_factor).sample + 1.0) / 2.0


def _guide(sampler: _Sampler, x0: torch.Tensor, extractor: SketchExtractor, loss_fn: SketchLoss,
           scale: float) -> tuple[torch.Tensor, float]:
    """x0 moved against the sketch loss's gradient, by GUIDE_STEP x scale of its RMS per picture."""
    started = time.perf_counter()
    with torch.enable_grad():
        x = x0.detach().requires_grad_(True)
        loss = loss_fn(extractor(sampler.decode(x).float()))
        (grad,) = torch.autograd.grad(loss.sum(), x)
    sampler.cost.extractor_backwards += 1
    sampler.cost.guidance_seconds += _synced() - started
    rms = grad.float().pow(2).mean((1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)
    return (x0.float() - GUIDE_STEP * scale * grad.float() / rms).to(x0.dtype), float(loss.detach().mean())


def _synced() -> float:
    """perf_counter after the GPU's queued work is done, so per-part seconds are the part's own."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def _start_latents(backbone: Backbone, target: SketchTarget, sched: DDIMScheduler, cfg: PictureConfig,
                   noise: torch.Tensor, cost: Cost) -> tuple[torch.Tensor, int]:
    """Pure noise (strength 1) or the sketch's latent noised to the starting step (SDEdit)."""
    steps = len(sched.timesteps)
    first = min(steps - 1, int(round(steps * (1.0 - cfg.strength))))
    if first == 0:
        return noise, 0
    paper = (1.0 - target.ink).expand(cfg.count, 3, -1, -1).to(backbone.device, backbone.dtype)
    with torch.no_grad():
        z0 = backbone.vae.encode((paper * 2.0 - 1.0).to(backbone.vae.dtype)).latent_dist.mean * backbone.scaling_factor
    a = sched.alphas_cumprod[int(sched.timesteps[first])].to(backbone.device)
    return (a.sqrt() * z0 + (1 - a).sqrt() * noise).to(backbone.dtype), first


def sketch_to_image(backbone: Backbone, sketch: ImageLike, config: PictureConfig, *,
                    controlnet: ControlNet | None = None, extractor: SketchExtractor | None = None,
                    lpips_model: torch.nn.Module | None = None, lora: LoRA | None = None,
                    on_event: Optional[Callable[[PictureEvent], None]] = None,
                    cancel: CancelFlag | None = None) -> PictureResult:
    """Pictures from `sketch` and `config.prompt`. With `extractor` given, each picture's own sketch and its loss to
    the user's are measured at the end (and guidance uses them when `config.sketch_scale` > 0)."""
    start = time.perf_counter()
    _config_errors(config)
    (w, h), notes = checked_size(backbone, config.width, config.height)
    target = SketchTarget.load(sketch, (w, h))
    notes += target.notes
    prompt, more = checked_prompt(backbone, config.prompt)
    negative, more2 = checked_prompt(backbone, config.negative_prompt, "negative prompt")
    notes += more + more2
    if config.sketch_scale > 0 and extractor is None:
        raise BadInputError("Sketch guidance needs a sketch extractor (HED); set its scale to 0 to turn it off.")
    loss_fn = None
    if extractor is not None:
        loss_fn = SketchLoss(target, config.chamfer, config.lpips, lpips_model).to(backbone.device)
    cost = Cost()
    sampler = _Sampler(backbone, config, backbone.encode_prompt(prompt), backbone.encode_prompt(negative), controlnet,
                       target.control_image() if controlnet is not None else None, cost)
    sched = DDIMScheduler.from_config(backbone.scheduler.config)  # our own: the backbone's is shared
    sched.set_timesteps(config.steps, device=backbone.device)
    noise = initial_noise((config.count, backbone.unet.config.in_channels, h // backbone.vae_scale_factor,
                           w // backbone.vae_scale_factor), config.seed, backbone.device, backbone.dtype)
    latents, first = _start_latents(backbone, target, sched, config, noise, cost)
    alphas = sched.alphas_cumprod.to(backbone.device)
    stride = sched.config.num_train_timesteps // config.steps
    todo = sched.timesteps[first:]
    with applied(backbone.unet, lora.to(backbone.device) if lora is not None else None):
        for i, t in enumerate(todo):
            if cancel is not None and cancel.is_set():
                cost.seconds = time.perf_counter() - start
                return PictureResult([], (w, h), cost, notes + ["Stopped before the picture was finished."],
                                     cancelled=True)
            a = alphas[int(t)]
            prev = int(t) - stride
            a_prev = alphas[prev] if prev >= 0 else sched.final_alpha_cumprod.to(backbone.device)
            x0, eps = split_prediction(sampler.predict(latents, t), latents, a, backbone.prediction_type)
            frac = i / len(todo)
            guided = config.sketch_scale > 0 and config.guide_start <= frac < config.guide_end
            loss = None
            if guided:
                x0, loss = _guide(sampler, x0, extractor, loss_fn, config.sketch_scale)
            latents = (a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps).to(backbone.dtype)  # DDIM, eta 0
            if on_event is not None:
                on_event(PictureEvent(i + 1, len(todo), time.perf_counter() - start, guided, loss))
    with torch.no_grad():
        rgb = sampler.decode(latents).clamp(0, 1).float()
        images = [Image.fromarray(np.round(x.permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)) for x in rgb]
        result = PictureResult(images, (w, h), cost, notes)
        if extractor is not None:
            ink = extractor(rgb).float()
            result.sketch_loss = [float(v) for v in loss_fn(ink)]
            result.sketches = [Image.fromarray(np.round(255 * (1 - k[0].clamp(0, 1).cpu().numpy())).astype(np.uint8), "L")
                               for k in ink]
    cost.seconds = time.perf_counter() - start
    return result


# ---------------------------------------------------------------- command line

def _parser() -> argparse.ArgumentParser:
    p = cli.parser("diffsketch_core.picture.sketch2image", __doc__)
    p.add_argument("--sketch", required=True, help="the sketch image (dark lines on white)")
    p.add_argument("--prompt", default="", help="what the picture shows")
    p.add_argument("--negative", default="", help="negative prompt")
    p.add_argument("--out", required=True, help="output PNG (with --count > 1: name-0.png, name-1.png, ...)")
    p.add_argument("--backbone", default=None, help="SD 1.x / 2.x / XL hub id or folder (default $DIFFSKETCH_SD_MODEL); tiny = demo")
    p.add_argument("--controlnet", default="off", help="'off', a scribble/lineart ControlNet hub id or folder, or "
                   "'default' ($DIFFSKETCH_CONTROLNET or lllyasviel/control_v11p_sd15_scribble)")
    p.add_argument("--control-scale", type=float, default=1.0)
    p.add_argument("--sketch-guidance", type=float, default=1.0, help="DiffSketching guidance scale (0 = off)")
    p.add_argument("--extractor", choices=EXTRACTORS, default="hed", help="differentiable sketch extractor (tiny = random, tests)")
    p.add_argument("--lpips", type=float, default=0.0, help="LPIPS weight in the sketch loss (chamfer weight is 1)")
    p.add_argument("--lora", default=None, help="a LoRA from diffsketch_core.picture.finetune")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--cfg", type=float, default=7.5)
    p.add_argument("--strength", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--height", type=int, default=None)
    return p


def _main(args: argparse.Namespace) -> None:
    bb = load_backbone(args.backbone)
    if bb.is_demo:
        cli.note("random-weight backbone: the pipeline runs, the pictures mean nothing")
    control = None if args.controlnet == "off" else load_controlnet(bb, None if args.controlnet == "default" else args.controlnet)
    extractor = load_extractor(args.extractor, bb.device) if args.sketch_guidance > 0 else None
    lpips_model = load_lpips(bb.device) if args.lpips > 0 else None
    cfg = PictureConfig(args.prompt, args.negative, args.steps, args.cfg, args.seed, args.count, args.width, args.height,
                        args.strength, args.control_scale, args.sketch_guidance, lpips=args.lpips)
    res = sketch_to_image(bb, args.sketch, cfg, controlnet=control, extractor=extractor, lpips_model=lpips_model,
                          lora=LoRA.load(args.lora) if args.lora else None,
                          on_event=lambda e: cli.progress(e.step, e.total, "guided step" if e.guided else "step", e.seconds))
    for n in res.notes:
        cli.note(n)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for k, img in enumerate(res.images):
        path = out if len(res.images) == 1 else out.with_name(f"{out.stem}-{k}{out.suffix or '.png'}")
        img.save(path)
        print(f"wrote {path}")
    c = res.cost
    print(f"{c.unet_calls} UNet calls, {c.controlnet_calls} ControlNet calls, {c.extractor_backwards} extractor "
          f"backward passes, {c.seconds:.1f} s" + (f"; sketch loss {', '.join(f'{v:.3f}' for v in res.sketch_loss)}"
                                                     if res.sketch_loss else ""))


def main(argv: list[str] | None = None) -> int:
    return cli.run(_parser(), _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
