"""Pull diffusion features out of a Stable Diffusion backbone (DESIGN.md section 4).

Taps are module paths with an optional kind (diffusion/taps.py has the catalogue). A bare UNet `ResnetBlock2D`
tap records its residual branch (the output of `conv2`, before the skip add), the convention of DiffSketch,
Plug-and-Play and Diffusion Hyperfeatures; a VAE-decoder resnet tap records the full block output (skip included);
a tap on any other module records its output (tokens (B, L, C) are reshaped to NCHW).

Shapes, for B images, G guidance branches (2: [uncond, cond], or 1), T timesteps and an SD-1.x UNet at
latent size h x w (64 x 64 for 512 px):

  UNetFeatures.maps["up_blocks.0.resnets.j"]  (B, G, T, 1280, h/8, w/8)
  UNetFeatures.maps["up_blocks.1.resnets.j"]  (B, G, T, 1280, h/4, w/4)
  UNetFeatures.maps["up_blocks.2.resnets.j"]  (B, G, T,  640, h/2, w/2)
  UNetFeatures.maps["up_blocks.3.resnets.j"]  (B, G, T,  320, h,   w)
  VAEFeatures.maps["decoder.mid_block.resnets.k"]      (B, 512, h, w)
  VAEFeatures.maps["decoder.up_blocks.i.resnets.j"]    (B, 512|512|256|128, h*2^i, w*2^i)
  VAEFeatures.rgb                                      (B, 3, 8h, 8w), decoder output in about [-1, 1]

The tiny backbone has the same names with widths 32/32/16/8 (UNet) and 32/32/16/8 (VAE). SD 2.x has SD 1.x's
layout; SDXL's UNet has three up blocks (1280 at h/4, 640 at h/2, 320 at h; 9 decoder resnets), the same VAE.

Every UNet call takes its condition keywords from `Backbone.unet_kwargs` (SDXL's pooled embedding and time ids
ride along with the text rows), and every hand-written denoising step reads the UNet's output through
`sampling.split_prediction` (epsilon or v).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Sequence

import torch

from .backbone import Backbone
from .controlnet import Control, residuals
from .lora import LoRA
from .sampling import ddim_grid, ddim_sample, initial_noise, split_prediction
from .taps import RES_OUT, AllTapsFired, Taps, to_nchw

# DiffSketch's representative timesteps (DDIM-50 grid indices 0,3,8,12,16,21,25,28,32,35,39,43,47).
DEFAULT_TIMESTEPS: tuple[int, ...] = (1, 61, 161, 241, 321, 421, 501, 561, 641, 701, 781, 861, 941)


def decoder_taps(unet: torch.nn.Module) -> list[str]:
    """The 12 decoder resnets of an SD-1.x UNet, in execution order."""
    return [f"up_blocks.{i}.resnets.{j}" for i, block in enumerate(unet.up_blocks) for j in range(len(block.resnets))]


def vae_decoder_taps(vae: torch.nn.Module) -> list[str]:
    dec = vae.decoder
    mids = [f"decoder.mid_block.resnets.{k}" for k in range(len(dec.mid_block.resnets))]
    ups = [f"decoder.up_blocks.{i}.resnets.{j}" for i, b in enumerate(dec.up_blocks) for j in range(len(b.resnets))]
    return mids + ups


@dataclass
class UNetFeatures:
    maps: dict[str, torch.Tensor]  # tap -> (B, G, T, C, H, W)
    timesteps: tuple[int, ...]
    branches: tuple[str, ...]  # ("uncond", "cond") or ("cond",)


@dataclass
class VAEFeatures:
    maps: dict[str, torch.Tensor]  # tap -> (B, C, H, W)
    rgb: torch.Tensor  # (B, 3, H, W)


@dataclass
class FeatureBundle:
    unet: UNetFeatures
    vae: VAEFeatures | None
    latents: torch.Tensor  # z0 in the scaled latent space, (B, 4, h, w)
    buckets: list[UNetFeatures] = field(default_factory=list)  # more feature sources for amalgamation (GATE)


class FeatureExtractor:
    """Features of real images by noise-and-extract, of generated images along a DDIM trajectory, and of
    the VAE decoder. All UNet rows (images x branches x timesteps) go through in as few forwards as
    `max_batch` allows."""

    def __init__(self, backbone: Backbone, taps: Sequence[str] | None = None,
                 timesteps: Sequence[int] = DEFAULT_TIMESTEPS, max_batch: int = 26,
                 out_dtype: torch.dtype = torch.float32, control: Control | None = None,
                 lora: LoRA | None = None, lora_scale: float = 1.0, original_size: tuple[int, int] | None = None,
                 crop: tuple[int, int] = (0, 0)):
        self.backbone, self.control, self.lora, self.lora_scale = backbone, control, lora, lora_scale
        # SDXL's size conditions (time ids): the "original size" defaults to the extracted image's own size
        self.original_size, self.crop = original_size, tuple(crop)
        self.taps = list(taps) if taps is not None else decoder_taps(backbone.unet)
        self.timesteps = tuple(int(t) for t in timesteps)
        n_train = backbone.scheduler.config.num_train_timesteps
        bad = [t for t in self.timesteps if not 0 <= t < n_train]
        if bad or not self.timesteps:
            raise ValueError(f"Timesteps must be a non-empty list in [0, {n_train}); got {list(timesteps)}")
        if control is not None and max(self.timesteps) + control.steps >= n_train:
            raise ValueError(f"ControlNet steps ({control.steps}) from the largest timestep leave the schedule")
        self.max_batch = max(1, int(max_batch))
        self.out_dtype = out_dtype

    # ------------------------------------------------------------ real images: noise-and-extract
    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] -> z0 = mean latent * scaling factor."""
        bb = self.backbone
        posterior = bb.vae.encode(images.to(bb.device, bb.vae.dtype)).latent_dist  # SDXL's VAE may stay in fp32
        return (posterior.mean * bb.scaling_factor).to(bb.dtype)

    @torch.no_grad()
    def unet_features(self, z0: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor | None = None,
                      seed: int = 0, noise: torch.Tensor | None = None,
                      control_image: torch.Tensor | None = None) -> UNetFeatures:
        """Noise z0 to every timestep with seeded noise (the same for both branches) and record the taps.
        cond/uncond: (B or 1, 77, D) text embeddings. noise: optional (B, T, 4, h, w). control_image:
        (B, 3, H, W) in [0, 1] when the extractor has a ControlNet. A LoRA is merged for this call only."""
        with (self.lora.applied(self.backbone.unet, self.lora_scale) if self.lora is not None else nullcontext()):
            return self._unet_features(z0, cond, uncond, seed, noise, control_image)

    def _unet_features(self, z0, cond, uncond, seed, noise, control_image) -> UNetFeatures:
        bb = self.backbone
        b, t_count = z0.shape[0], len(self.timesteps)
        if (self.control is None) != (control_image is None):
            raise ValueError("A control image goes with a ControlNet: give both or neither")
        if noise is None:
            noise = initial_noise((b, t_count, *z0.shape[1:]), seed, bb.device, bb.dtype)
        steps = self.control.steps if self.control is not None else 0
        ts = torch.tensor(self.timesteps, device=bb.device) + steps  # GATE: start `steps` above t
        x_t = bb.scheduler.add_noise(z0.unsqueeze(1).expand_as(noise).reshape(-1, *z0.shape[1:]),
                                     noise.reshape(-1, *z0.shape[1:]), ts.repeat(b))
        x_t = x_t.view(b, t_count, *z0.shape[1:])
        branches = [e.expand(b, -1, -1) for e in ([uncond] if uncond is not None else []) + [cond]]
        g_count = len(branches)
        # rows ordered (b, g, t) so outputs reshape straight to (B, G, T, ...)
        rows_x = x_t.unsqueeze(1).expand(b, g_count, t_count, *z0.shape[1:]).reshape(-1, *z0.shape[1:])
        rows_e = torch.stack(branches, 1).unsqueeze(2).expand(b, g_count, t_count, *cond.shape[1:])
        rows_e = rows_e.reshape(-1, *cond.shape[1:])
        rows_t = ts.repeat(b * g_count)
        rows_c = None
        if control_image is not None:
            rows_c = control_image.to(bb.device, bb.dtype).unsqueeze(1).expand(b, g_count * t_count, *control_image.shape[1:])
            rows_c = rows_c.reshape(-1, *control_image.shape[1:])
            for _ in range(steps):  # guided DDIM steps of one timestep each, t + steps -> t
                rows_x = self._guided_step(rows_x, rows_e, rows_t, rows_c)
                rows_t = rows_t - 1
        maps = self._run_rows(rows_x, rows_e, rows_t, tuple(z0.shape[-2:]), rows_c)
        maps = {k: v.view(b, g_count, t_count, *v.shape[1:]) for k, v in maps.items()}
        names = ("uncond", "cond") if uncond is not None else ("cond",)
        return UNetFeatures(maps, self.timesteps, names)

    def _cond(self, emb: torch.Tensor, latent_hw) -> dict:
        return self.backbone.unet_kwargs(emb, latent_hw, self.original_size, self.crop)

    def _extra(self, x, t, cond: dict, control_rows) -> dict:
        return residuals(self.control, x, t, cond, control_rows) if control_rows is not None else {}

    def _guided_step(self, x, emb, t, control_rows) -> torch.Tensor:
        """One deterministic DDIM step t -> t - 1 of every row, with the ControlNet's residuals."""
        bb = self.backbone
        alphas = bb.scheduler.alphas_cumprod.to(x.device)
        out = torch.empty_like(x)
        for start in range(0, x.shape[0], self.max_batch):
            sl = slice(start, start + self.max_batch)
            cond = self._cond(emb[sl], tuple(x.shape[-2:]))
            pred = bb.unet(x[sl], t[sl], **cond, **self._extra(x[sl], t[sl], cond, control_rows[sl])).sample
            a_t = alphas[t[sl]].view(-1, 1, 1, 1)
            a_prev = alphas[t[sl] - 1].view(-1, 1, 1, 1).to(x.dtype)
            x0, eps = split_prediction(pred, x[sl], a_t, bb.prediction_type)
            out[sl] = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
        return out

    def _run_rows(self, x: torch.Tensor, emb: torch.Tensor, t: torch.Tensor, latent_hw,
                  control_rows: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        unet = self.backbone.unet
        with Taps(unet, self.taps, early_exit=True) as taps:
            for start in range(0, x.shape[0], self.max_batch):
                sl = slice(start, start + self.max_batch)
                taps.new_forward()
                cond = self._cond(emb[sl], latent_hw)
                extra = self._extra(x[sl], t[sl], cond, control_rows[sl] if control_rows is not None else None)
                try:
                    unet(x[sl], t[sl], **cond, **extra)
                except AllTapsFired:
                    pass
        return {n: torch.cat([to_nchw(r, latent_hw) for r in recs]).to(self.out_dtype)
                for n, recs in taps.records.items()}

    # ------------------------------------------------------------ generated images: along the trajectory
    @torch.no_grad()
    def sample_with_features(self, cond: torch.Tensor, uncond: torch.Tensor | None = None, *, steps: int = 50,
                             guidance: float = 5.0, seed: int = 0) -> FeatureBundle:
        """Generate with DDIM and record the taps at the extractor's timesteps (they must lie on the DDIM grid,
        e.g. the 50-step grid 1, 21, ..., 981 for the defaults), as the official DiffSketch code does."""
        grid = ddim_grid(self.backbone, steps)
        off_grid = sorted(set(self.timesteps) - set(grid))
        if off_grid:
            raise ValueError(f"Timesteps {off_grid} are not on the {steps}-step DDIM grid {grid[::-1]}")
        wanted = set(self.timesteps)
        per_t: dict[int, dict[str, torch.Tensor]] = {}
        current = {"t": None}
        unet = self.backbone.unet
        with Taps(unet, self.taps) as taps:
            def before_step(_i: int, t: int, _x: torch.Tensor) -> None:
                current["t"] = t if t in wanted else None

            def after_unet(_m, _inp, _out) -> None:  # the taps inside have fired by now
                if current["t"] is not None:
                    per_t[current["t"]] = {n: r[-1] for n, r in taps.records.items()}
                for recs in taps.records.values():
                    recs.clear()

            handle = unet.register_forward_hook(after_unet)
            try:
                z0 = ddim_sample(self.backbone, cond, uncond, steps=steps, guidance=guidance, seed=seed,
                                 callback=before_step)
            finally:
                handle.remove()
        b, g = cond.shape[0], 2 if uncond is not None else 1
        latent_hw = tuple(z0.shape[-2:])
        maps = {}
        for n in self.taps:
            # the CFG batch is [uncond..., cond...] -> (G, B, ...) -> (B, G, ...)
            stacked = torch.stack([to_nchw(per_t[t][n], latent_hw) for t in self.timesteps], 1)
            maps[n] = stacked.view(g, b, *stacked.shape[1:]).transpose(0, 1).to(self.out_dtype)
        names = ("uncond", "cond") if uncond is not None else ("cond",)
        return FeatureBundle(UNetFeatures(maps, self.timesteps, names), self.vae_features(z0), z0)

    # ------------------------------------------------------------ VAE decoder
    @torch.no_grad()
    def vae_features(self, z0: torch.Tensor, taps: Sequence[str] | None = None) -> VAEFeatures:
        """Decode z0 (scaled latents) and record the decoder's mid and up resnets (full outputs) and the RGB."""
        vae = self.backbone.vae
        names = list(taps) if taps is not None else vae_decoder_taps(vae)
        with Taps(vae, names, resnet_kind=RES_OUT) as rec:
            rgb = vae.decode(z0.to(vae.dtype) / self.backbone.scaling_factor).sample  # SDXL: an fp32 VAE
        maps = {n: r[-1].to(self.out_dtype) for n, r in rec.records.items()}
        return VAEFeatures(maps, rgb.to(self.out_dtype))

    @torch.no_grad()
    def extract(self, images: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor | None = None,
                seed: int = 0, with_vae: bool = True, control_image: torch.Tensor | None = None) -> FeatureBundle:
        """Noise-and-extract for real images (B, 3, H, W) in [-1, 1]; H and W multiples of 8x the UNet's
        downsampling (64 px for SD-1.x)."""
        z0 = self.encode(images)
        unet = self.unet_features(z0, cond, uncond, seed=seed, control_image=control_image)
        return FeatureBundle(unet, self.vae_features(z0) if with_vae else None, z0)


def image_to_tensor(img, size: tuple[int, int] | None = None) -> torch.Tensor:
    """PIL RGB image -> (1, 3, H, W) in [-1, 1], optionally resized to (W, H)."""
    import numpy as np
    from PIL import Image

    if size is not None and img.size != size:
        img = img.resize(size, Image.Resampling.BICUBIC)
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0)

