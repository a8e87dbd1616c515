"""A plain DDIM + classifier-free-guidance loop over a Backbone, with a per-step callback.

We write our own loop (rather than calling a diffusers pipeline) so callers can see every step: the
trajectory feature mode records UNet activations at chosen timesteps, CDST generation batches samples.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from .backbone import Backbone

StepCallback = Callable[[int, int, torch.Tensor], None]  # (step index, timestep, latents x_t before the step)


def stream_seed(seed: int, stream: int, index: int = 0) -> int:
    """An independent seed for each (seed, stream, index), so noises drawn for different purposes (CDST starting
    noise, extraction noise of the samples, extraction noise of the example and of inference) never coincide."""
    import numpy as np

    return int(np.random.SeedSequence([int(seed), int(stream), int(index)]).generate_state(1)[0])


def split_prediction(out: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor,
                     prediction_type: str = "epsilon") -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, eps) from a UNet output at x_t whose cumulative alpha is `alpha_bar` (broadcastable), for each kind of
    prediction: "epsilon" (SD 1.x, SD 2.x base, SDXL), "v_prediction" (SD 2.x 768: v = sqrt(a) eps - sqrt(1-a) x0)
    or "sample" (x0 itself). Every hand-written denoising step goes through here, so none assumes epsilon."""
    a = alpha_bar.to(x_t.dtype)
    if prediction_type == "epsilon":
        eps = out
        return (x_t - (1 - a).sqrt() * eps) / a.sqrt(), eps
    if prediction_type == "v_prediction":
        return a.sqrt() * x_t - (1 - a).sqrt() * out, a.sqrt() * out + (1 - a).sqrt() * x_t
    if prediction_type == "sample":
        return out, (x_t - a.sqrt() * out) / (1 - a).sqrt()
    raise ValueError(f"Unknown prediction type {prediction_type!r}")


def initial_noise(shape: tuple[int, ...], seed: int | None, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Seeded noise drawn on the CPU, so the same seed gives the same latents on any device."""
    gen = torch.Generator("cpu").manual_seed(seed) if seed is not None else None
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)


@torch.no_grad()
def ddim_sample(backbone: Backbone, cond: torch.Tensor, uncond: torch.Tensor | None = None, *,
                steps: int = 50, guidance: float = 5.0, seed: int | None = 0, latent_hw: tuple[int, int] | None = None,
                callback: Optional[StepCallback] = None) -> torch.Tensor:
    """Sample latents z0 (B, 4, h, w), already divided back by nothing: they live in the scaled latent space
    (divide by `backbone.scaling_factor` before decoding). `uncond` None means no guidance."""
    unet, sched = backbone.unet, backbone.scheduler
    h, w = latent_hw or (unet.config.sample_size, unet.config.sample_size)
    batch = cond.shape[0]
    latents = initial_noise((batch, unet.config.in_channels, h, w), seed, backbone.device, backbone.dtype)
    sched.set_timesteps(steps, device=backbone.device)
    embeds = cond if uncond is None else torch.cat([uncond.expand_as(cond), cond])
    cond_kw = backbone.unet_kwargs(embeds, (h, w))
    for i, t in enumerate(sched.timesteps):
        if callback is not None:
            callback(i, int(t), latents)
        model_in = latents if uncond is None else torch.cat([latents, latents])
        # the scheduler's step reads the model output as its config's prediction type (epsilon or v)
        eps = unet(model_in, t, **cond_kw).sample
        if uncond is not None:
            eps_u, eps_c = eps.chunk(2)
            eps = eps_u + guidance * (eps_c - eps_u)
        latents = sched.step(eps, t, latents, eta=0.0).prev_sample
    return latents


def ddim_grid(backbone: Backbone, steps: int) -> list[int]:
    backbone.scheduler.set_timesteps(steps)
    return [int(t) for t in backbone.scheduler.timesteps]


@torch.no_grad()
def img2img(backbone: Backbone, z0: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor | None = None, *,
            strength: float = 0.5, steps: int = 50, guidance: float = 5.0, seed: int | None = 0,
            extra: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], dict] | None = None) -> torch.Tensor:
    """SDEdit-style Img2Img: noise the scaled latents z0 to `strength` of the schedule and run the DDIM grid down
    from there. `extra(x, t, cond)` may add UNet keyword arguments per step (a ControlNet's residuals; `cond` is the
    UNet's condition keywords, `Backbone.unet_kwargs`). GATE's
    content-shift proxy compares the decoded result with the input."""
    unet, sched = backbone.unet, backbone.scheduler
    sched.set_timesteps(steps, device=backbone.device)
    start = int(round(steps * (1 - float(strength))))
    timesteps = sched.timesteps[start:]
    if len(timesteps) == 0:
        return z0
    noise = initial_noise(tuple(z0.shape), seed, backbone.device, backbone.dtype)
    latents = sched.add_noise(z0.to(backbone.dtype), noise, timesteps[:1].repeat(z0.shape[0]))
    embeds = cond if uncond is None else torch.cat([uncond.expand_as(cond), cond])
    cond_kw = backbone.unet_kwargs(embeds, tuple(z0.shape[-2:]))
    for t in timesteps:
        model_in = latents if uncond is None else torch.cat([latents, latents])
        t_rows = t.repeat(model_in.shape[0])
        kwargs = extra(model_in, t_rows, cond_kw) if extra is not None else {}
        eps = unet(model_in, t_rows, **cond_kw, **kwargs).sample
        if uncond is not None:
            eps_u, eps_c = eps.chunk(2)
            eps = eps_u + guidance * (eps_c - eps_u)
        latents = sched.step(eps, t, latents, eta=0.0).prev_sample
    return latents
