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
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

import numpy as np
import torch
from PIL import Image

from .. import cli
from ..diffusion.backbone import Backbone, load_backbone
from .extraction import StyleExtraction, bucket_specs, load_control, load_lora_spec, make_control_image  # noqa: F401
from .conditions import CDSTConditions, ConditionPrior, prior_for
from ..errors import BadInputError, check_settings
from ..diffusion.features import DEFAULT_TIMESTEPS, FeatureBundle, UNetFeatures, VAEFeatures, image_to_tensor
from ..diffusion.prompts import PromptOptions, Prompts, UNCOND_CHOICES
from .generator import SketchGenerator, generator_for
from ..images import ImageLike, load_image
from ..perceptual import ClipImageEncoder, load_clip, load_lpips
from .losses import DiffSketchLoss, LossWeights
from ..diffusion.sampling import ddim_sample, stream_seed
from ..diffusion.timesteps import read_timesteps
from .sketches import INVERT_CHOICES, parse_invert, prepare_sketch
from .store import Style

MIN_SIDE = 64
# An empty caption is not left empty. DESIGN: the example's condition is the caption's embedding; "" would make it
# the unconditional embedding, so the cond and uncond halves of the example's features would be equal and CDST's
# first samples (weight 1 on the example's condition) plain unconditional draws: "start near the example" is lost.
# A neutral caption keeps a real text condition; it is recorded in style.json and used again at inference, and the
# user is told (app and CLI note) that a caption of their own is better.
DEFAULT_CAPTION = "a photo"
# Noise streams (diffusion.sampling.stream_seed): each purpose draws its own noise from the training seed, so the
# extraction noise of a sample never equals the starting noise x_T that drew it, nor the example's noise.
EXAMPLE_STREAM, XT_STREAM, SAMPLE_STREAM = 0, 1, 2


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
    taps: tuple[str, ...] | None = None  # UNet taps (diffusion/taps.py catalogue); None: DiffSketch's 12 resnets
    # GATE content-shift suppression (diffusion/controlnet.py): a ControlNet (hub id, folder or "tiny") fed with
    # the edges of the image being extracted, made by one of our extractors; off when None
    controlnet: str | None = None
    control_image: str = "canny"
    control_scale: float = 1.0
    control_steps: int = 0  # GATE's recipe: guided DDIM steps from t + steps down to t before extracting
    lora: str | None = None  # a UNet LoRA (file, folder or hub id) merged while features are extracted
    lora_scale: float = 1.0
    # feature amalgamation (GATE 4.3): plain, ControlNet and LoRA features (and extra_seeds more noise draws) as
    # separate sources mixed by learned per-channel weight assigners, instead of one extraction with all at once
    amalgamate: bool = False
    extra_seeds: int = 0
    # GATE's fine-grained prompts (diffusion/prompts.py): quality tags after the caption, and what the unconditional
    # half of the features is extracted with ("empty", "tags" or "prompt"); recorded, so inference does the same
    fine_grained: bool = False
    uncond_prompt: str = "empty"
    # an IP-Adapter (diffusion/ip_adapter.py: hub id, folder or "tiny") fed with each image's own CLIP embedding
    ip_adapter: str | None = None
    ip_adapter_scale: float = 1.0

    def __post_init__(self):
        res = self.resolution
        check_settings("Training settings", [
            (self.iterations >= 1, f"iterations must be at least 1, not {self.iterations}"),
            (self.horizon >= 1, f"the CDST horizon must be at least 1, not {self.horizon}"),
            (self.lr > 0, f"lr must be above 0, not {self.lr}"),
            (res is None or (64 <= res <= 2048 and res % 8 == 0),
             f"the resolution must be a multiple of 8 from 64 to 2048 px, not {res}"),
            (min(self.sample_steps, self.gen_batch, self.preview_every, self.max_batch) >= 1,
             "sample steps, generation batch, preview interval and max batch must be at least 1"),
            (min(self.control_steps, self.extra_seeds) >= 0, "control steps and extra seeds must not be negative")])


@dataclass
class TrainEvent:
    kind: str  # "start" | "step" | "preview" | "paused" (a chunk ended, see run(until=)) | "done" | "cancelled"
    iteration: int
    total: int
    losses: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    preview: dict[str, np.ndarray] | None = None  # "example" and "sample" sketches, HxW uint8
    notes: list[str] = field(default_factory=list)


def _slice(bundle: FeatureBundle, i: int) -> FeatureBundle:
    def one(u: UNetFeatures) -> UNetFeatures:
        return UNetFeatures({k: v[i:i + 1] for k, v in u.maps.items()}, u.timesteps, u.branches)

    vae = VAEFeatures({k: v[i:i + 1] for k, v in bundle.vae.maps.items()}, bundle.vae.rgb[i:i + 1])
    return FeatureBundle(one(bundle.unet), vae, bundle.latents[i:i + 1], [one(u) for u in bundle.buckets])


def _to_uint8(sketch: torch.Tensor) -> np.ndarray:
    return (sketch[0, 0].detach().float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)


def control_spec(cfg: TrainConfig) -> dict | None:
    """What style.json records of the ControlNet, so Photo -> Sketch conditions photos the same way."""
    if not cfg.controlnet:
        return None
    return {"controlnet": cfg.controlnet, "image": cfg.control_image, "scale": cfg.control_scale,
            "steps": cfg.control_steps}


def lora_spec(cfg: TrainConfig) -> dict | None:
    return {"source": cfg.lora, "scale": cfg.lora_scale} if cfg.lora else None


def ip_adapter_spec(cfg: TrainConfig) -> dict | None:
    return {"source": cfg.ip_adapter, "scale": cfg.ip_adapter_scale} if cfg.ip_adapter else None


def buckets_of(cfg: TrainConfig) -> list[dict]:
    return bucket_specs(control_spec(cfg), lora_spec(cfg), cfg.amalgamate, cfg.extra_seeds, ip_adapter_spec(cfg))


def prompt_options(cfg: TrainConfig) -> PromptOptions:
    try:
        return PromptOptions(cfg.fine_grained, cfg.uncond_prompt)
    except ValueError as exc:
        raise BadInputError(str(exc)) from None


def example_seed(seed: int) -> int:
    """Extraction seed of the example photo, and so of every photo at inference (Photo -> Sketch)."""
    return stream_seed(seed, EXAMPLE_STREAM)


class OneShotTrainer:
    def __init__(self, backbone: Backbone, photo: ImageLike, sketch: ImageLike, caption: str = "",
                 config: TrainConfig | None = None, clip: ClipImageEncoder | None = None,
                 lpips_model: torch.nn.Module | None = None, generator: SketchGenerator | None = None,
                 prior: ConditionPrior | None = None, invert: str | bool | None = "auto"):
        self.bb, self.cfg = backbone, config or TrainConfig()
        self.notes: list[str] = []
        self.caption = caption.strip()
        if not self.caption:
            self.caption = DEFAULT_CAPTION
            self.notes.append(f"No caption given: '{DEFAULT_CAPTION}' is used (and kept with the style). A caption "
                              "saying what the photo shows makes the first training samples resemble it.")
        res = self.cfg.resolution or backbone.resolution
        multiple = backbone.vae_scale_factor * 2 ** (len(backbone.unet.config.block_out_channels) - 1)
        if res % multiple:
            raise BadInputError(f"Training resolution must be a multiple of {multiple}, got {res}.")
        self.res = res
        loaded = load_image(photo)
        self.notes += loaded.notes
        if min(loaded.image.size) < MIN_SIDE:
            raise BadInputError(f"The photo is {loaded.image.size[0]}x{loaded.image.size[1]}; at least {MIN_SIDE} px a side is needed.")
        self.invert = parse_invert(invert)
        target, sketch_notes, self.sketch_inverted = prepare_sketch(sketch, loaded.image.size, self.invert)
        self.notes += sketch_notes
        dev = backbone.device
        # both stretched to the square training size; inference does the same and resizes back
        self.photo = image_to_tensor(loaded.image, (res, res)).to(dev)
        target_img = Image.fromarray((target * 255).astype(np.uint8), "L").resize((res, res), Image.Resampling.LANCZOS)
        self.target = torch.from_numpy(np.asarray(target_img, np.float32) / 255.0)[None, None].to(dev)
        self.buckets = buckets_of(self.cfg)
        try:  # an unknown tap name or kind: the user's choice, said plainly
            self.generator = (generator or generator_for(backbone, self.cfg.timesteps, taps=self.cfg.taps,
                                                         num_buckets=len(self.buckets))).to(dev)
        except ValueError as exc:
            raise BadInputError(str(exc)) from None
        # the extraction reads the generator's taps, as Photo -> Sketch does
        self.extraction = StyleExtraction(backbone, self.generator.config.unet_taps, self.cfg.timesteps, self.buckets,
                                          self.cfg.max_batch)
        self.extractor = self.extraction.main
        self.uncond = backbone.encode_prompt("")  # CFG's unconditional half when drawing the CDST images
        self.prompts = Prompts(backbone, prompt_options(self.cfg))  # the texts the features are extracted with
        self.example_cond = self.prompts.cond(self.caption)
        self.example = self.extraction.photo(self.photo, loaded.image, self.example_cond,
                                             self.prompts.uncond(self.example_cond), self.cfg.seed, EXAMPLE_STREAM)
        self.clip = (clip or load_clip(device=dev)).to(dev)
        if self.cfg.weights.lpips > 0 and lpips_model is None:
            lpips_model = load_lpips(dev)
        self.loss = DiffSketchLoss(self.clip, lpips_model if self.cfg.weights.lpips > 0 else None, self.cfg.weights)
        # DESIGN: the example's image side of the directional CLIP losses is its VAE reconstruction, as the
        # samples' is theirs (VAE decodes), so the example-to-sample direction measures content, not VAE artefacts.
        self.e_s_ex, self.e_i_ex = self.loss.embed_example(self.target, self.example_image)
        self.conditions = CDSTConditions(prior or prior_for(backbone), self.example_cond[0], self.cfg.horizon, self.cfg.seed)
        self.opt = torch.optim.Adam(self.generator.parameters(), lr=self.cfg.lr)
        self._queue: list[FeatureBundle] = []
        self.iteration = 0

    @property
    def example_image(self) -> torch.Tensor:
        """The example's VAE reconstruction in [0, 1], (1, 3, H, W)."""
        return (self.example.vae.rgb.float().clamp(-1, 1) + 1) / 2

    def _refill(self) -> None:
        """Draw the CDST images of the block of `gen_batch` iterations the current one is in, and extract their
        features in one batched pass. Blocks start at multiples of gen_batch, so a resumed run sees the same
        samples as an uninterrupted one."""
        n = self.cfg.gen_batch
        first = self.iteration - self.iteration % n
        cond = torch.cat([self.conditions(first + k) for k in range(n)]).to(self.bb.device, self.bb.dtype)
        latent = self.res // self.bb.vae_scale_factor
        z0 = ddim_sample(self.bb, cond, self.uncond, steps=self.cfg.sample_steps, guidance=self.cfg.guidance,
                         seed=stream_seed(self.cfg.seed, XT_STREAM, first), latent_hw=(latent, latent))
        bundle = self.extraction.samples(z0, cond, self.prompts.uncond(cond), self.cfg.seed, SAMPLE_STREAM, first)
        self._queue = [_slice(bundle, k) for k in range(self.iteration - first, n)]

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

    # ------------------------------------------------------------ resumable chunks (the app on ZeroGPU)
    def state_dict(self) -> dict:
        """What a later trainer built from the same inputs needs to go on exactly where this one stopped
        (CPU tensors; the CDST conditions and noises depend only on the seed and the iteration)."""
        def cpu(x):
            if isinstance(x, torch.Tensor):
                return x.detach().cpu().clone()
            if isinstance(x, dict):
                return {k: cpu(v) for k, v in x.items()}
            if isinstance(x, list):
                return [cpu(v) for v in x]
            return x

        return {"iteration": self.iteration, "generator": cpu(self.generator.state_dict()),
                "optimizer": cpu(self.opt.state_dict())}

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.opt.load_state_dict(state["optimizer"])  # Adam moves its moments to the parameters' device
        self.iteration = int(state["iteration"])
        self._queue = []

    def run(self, on_event: Optional[Callable[[TrainEvent], None]] = None, cancel: CancelFlag | None = None,
            until: int | None = None) -> Style:
        """Train to cfg.iterations, or only up to iteration `until` (a chunk: the last event is then "paused")."""
        emit = on_event or (lambda e: None)
        total, start = self.cfg.iterations, time.perf_counter()
        stop_at = total if until is None else min(total, until)
        emit(TrainEvent("start", self.iteration, total, notes=self.notes))
        while self.iteration < stop_at:
            if cancel is not None and cancel.is_set():
                emit(TrainEvent("cancelled", self.iteration, total, seconds=time.perf_counter() - start))
                return self.style()
            losses, s_rec, s_i = self.step()
            elapsed = time.perf_counter() - start
            preview = None
            if self.iteration % self.cfg.preview_every == 0 or self.iteration == total:
                preview = {"example": _to_uint8(s_rec), "sample": _to_uint8(s_i)}
            emit(TrainEvent("preview" if preview else "step", self.iteration, total, losses, elapsed, preview))
        kind = "done" if self.iteration >= total else "paused"
        emit(TrainEvent(kind, self.iteration, total, seconds=time.perf_counter() - start))
        return self.style()

    def style(self) -> Style:
        # the seed is kept so that Photo -> Sketch extracts with the example's own noise (train/inference parity)
        meta = {"iterations": self.iteration, "backbone_is_demo": self.bb.is_demo, "seed": self.cfg.seed,
                "sketch_inverted": self.sketch_inverted, "control": control_spec(self.cfg),
                "lora": lora_spec(self.cfg), "buckets": self.buckets, "prompts": self.prompts.options.to_meta(),
                "ip_adapter": ip_adapter_spec(self.cfg)}
        return Style(self.generator.eval(), self.caption, self.res, meta)


# ---------------------------------------------------------------- GPU time (ZeroGPU asks for it up front)

# Assumed costs for a first estimate on a datacenter GPU at 512 px (fp16 SD-1.x UNet); no GPU was at hand to measure
# them, so they are deliberately on the high side, and the app replaces them with the seconds per iteration it
# measured in the previous chunk as soon as it has one (see plan_chunks).
UNET_ROW_SECONDS = 0.02  # one UNet row (one image, one branch, one timestep) at 512 px
STEP_SECONDS = 0.25  # generator forward on example + sample, CLIP/LPIPS losses, backward, Adam at 512 px
# A UNet row's cost relative to SD 1.5 at the same pixels (benchmarks/backbones.py, FLOPs to the last decoder tap
# at 512 px: SD 2.1 1.00x, SDXL 1.91x); the native resolution (768, 1024) is counted by `resolution`.
FAMILY_UNET_COST = {"sd1": 1.0, "sd2": 1.0, "sdxl": 1.91}
SETUP_SECONDS = 20.0  # per GPU call: moving models, example features, CLIP embeddings
CHUNK_SECONDS = 120  # a short GPU call: what a chunk of training is sized to
MARGIN = 1.3  # asked duration = estimate x margin, so a chunk is not cut off by a slightly slower GPU


def iteration_seconds(cfg: TrainConfig, resolution: int, family: str = "sd1") -> float:
    """Estimated GPU seconds of one training iteration: its share of the CDST sampling (2 CFG rows x steps per
    image) and of the extraction (2 branches x timesteps per image and feature source; a ControlNet adds about
    half a UNet per pass, GATE's steps one pass each), plus the generator step; scaled with pixels."""
    extraction = 0.0
    for bucket in buckets_of(cfg):
        control = bucket["control"]
        extraction += (1 + (control["steps"] if control else 0)) * (1.5 if control else 1.0)
    rows = 2 * cfg.sample_steps + 2 * len(cfg.timesteps) * extraction
    unet = UNET_ROW_SECONDS * FAMILY_UNET_COST.get(family, 1.0)
    return (rows * unet + STEP_SECONDS) * (resolution / 512) ** 2


@dataclass
class ChunkPlan:
    chunks: list[int]  # iterations per GPU call
    seconds: list[int]  # duration asked for each call

    @property
    def total_seconds(self) -> int:
        return sum(self.seconds)


def plan_chunks(iterations: int, per_iteration: float, setup: float = SETUP_SECONDS,
                call_seconds: int = CHUNK_SECONDS, multiple: int = 1) -> ChunkPlan:
    """Split `iterations` into GPU calls of at most `call_seconds` each (chunk sizes multiples of `multiple`,
    the CDST batch, so no sample is drawn twice), and the duration to ask for each."""
    fit = max(1, int((call_seconds / MARGIN - setup) / max(per_iteration, 1e-6)))
    if fit >= multiple:
        fit -= fit % multiple
    chunks, left = [], iterations
    while left > 0:
        chunks.append(min(fit, left))
        left -= chunks[-1]
    # within call_seconds by construction, unless one iteration alone does not fit: then it asks what it needs
    seconds = [int(math.ceil(max(10.0, (setup + n * per_iteration) * MARGIN))) for n in chunks]
    return ChunkPlan(chunks, seconds)


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
    p.add_argument("--invert", choices=INVERT_CHOICES, default="auto",
                   help="invert the sketch: auto (guess which side is paper), yes, or no")
    p.add_argument("--taps", default=None,
                   help="comma-separated UNet taps, e.g. 'up_blocks.1.resnets.0:res-out,up_blocks.1.attentions.0:self-q' "
                        "(default: DiffSketch's 12 decoder resnets, residual branch)")
    p.add_argument("--seed", type=int, default=50)
    p.add_argument("--controlnet", default=None,
                   help="GATE: a ControlNet (hub id, local folder, or 'tiny' with the tiny backbone) fed with the "
                        "photo's edges during feature extraction")
    p.add_argument("--control-image", default="canny", help="extractor that makes the control image")
    p.add_argument("--control-scale", type=float, default=1.0)
    p.add_argument("--lora", default=None, help="a UNet LoRA (.safetensors file, folder or hub id) for extraction")
    p.add_argument("--lora-scale", type=float, default=1.0)
    p.add_argument("--amalgamate", action="store_true",
                   help="GATE's feature amalgamation: plain, ControlNet and LoRA features as separate sources mixed "
                        "by learned per-channel weights")
    p.add_argument("--extra-seeds", type=int, default=0, help="with --amalgamate: more plain sources, other noise")
    p.add_argument("--control-steps", type=int, default=0,
                   help="GATE's recipe: ControlNet-guided denoising steps from t + N to t before extracting")
    p.add_argument("--ip-adapter", default=None,
                   help="an IP-Adapter (h94/IP-Adapter, a folder with ip-adapter_sd15.safetensors and image_encoder/, "
                        "or 'tiny' with the tiny backbone) fed with each image's CLIP embedding during extraction")
    p.add_argument("--ip-adapter-scale", type=float, default=1.0)
    p.add_argument("--fine-grained", action="store_true",
                   help="GATE's fine-grained prompt: the caption + quality tags ('high quality, best quality, ...')")
    p.add_argument("--uncond-prompt", choices=UNCOND_CHOICES, default="empty",
                   help="what the unconditional half of the features is extracted with: empty (DiffSketch), tags "
                        "(the quality tags alone) or prompt (the cond half's prompt, GATE literally)")
    p.add_argument("--captioner", default=None,
                   help="an image-captioning model (hub id or folder, default $DIFFSKETCH_CAPTIONER) that writes the "
                        "caption when --caption is empty")
    return p


def print_progress(e: TrainEvent) -> None:
    """A training CLI's progress lines: previews, the end, a Stop."""
    if e.kind in ("preview", "done", "cancelled"):
        loss = f" loss {e.losses['total']:.4f}" if e.losses else ""
        cli.progress(e.iteration, e.total, f"{e.kind}{loss}", e.seconds)


def caption_photo(photo: ImageLike, captioner: str | None = None) -> str:
    """The caption a captioner writes for the photo (`captioner`, else $DIFFSKETCH_CAPTIONER); "" when none is
    named: a captioner is never loaded, nor downloaded, unless the user asks for one."""
    from ..diffusion.captioner import captioner_model, load_captioner

    source = captioner_model(captioner)
    if not source:
        return ""
    return load_captioner(source).caption(load_image(photo).image)


def _main(args: argparse.Namespace) -> int:
    taps = tuple(t.strip() for t in args.taps.split(",") if t.strip()) if args.taps else None
    cfg = TrainConfig(iterations=args.iterations, horizon=args.horizon or max(1, args.iterations * 5 // 6),
                      resolution=args.resolution, sample_steps=args.sample_steps, gen_batch=args.gen_batch,
                      seed=args.seed, controlnet=args.controlnet, control_image=args.control_image,
                      control_scale=args.control_scale, control_steps=args.control_steps, lora=args.lora,
                      lora_scale=args.lora_scale, amalgamate=args.amalgamate, extra_seeds=args.extra_seeds,
                      fine_grained=args.fine_grained, uncond_prompt=args.uncond_prompt, ip_adapter=args.ip_adapter,
                      ip_adapter_scale=args.ip_adapter_scale, taps=taps)
    if args.timesteps:
        cfg.timesteps = read_timesteps(args.timesteps)
    caption = args.caption.strip()  # the settings are checked first: a captioner and SD take a while to load
    if not caption:
        caption = caption_photo(args.photo, args.captioner)
        if caption:
            cli.note(f"Caption from the captioner: '{caption}'")
    bb = load_backbone(args.backbone)
    try:
        trainer = OneShotTrainer(bb, args.photo, args.sketch, caption, cfg, clip=load_clip(args.clip, bb.device),
                                 invert=args.invert)
    except ValueError as exc:  # an unknown tap name or kind
        raise BadInputError(str(exc)) from None
    for note in trainer.notes:
        cli.note(note)
    trainer.run(print_progress).save(args.out)
    print(args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(_parser(), _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
