"""Which activation a tap records: a catalogue of tap kinds per block, and the forward hooks that record them.

A tap is a module path with an optional kind: "up_blocks.1.resnets.2" or "up_blocks.1.attentions.0:self-q".

  kind           on                      records
  res-increment  ResnetBlock2D           the residual branch (output of conv2, before the skip add): DiffSketch's,
                                         Plug-and-Play's and Diffusion Hyperfeatures' UNet feature
  res-out        ResnetBlock2D           the block output, (skip + branch) / output_scale_factor
  attn-out       Transformer2DModel      the attention block's spatial output (after proj_out and its residual)
  self-q/k/v     Transformer2DModel      self-attention query/key/value of its first transformer block (tokens)
  cross-q        Transformer2DModel      cross-attention query (image tokens; cross keys/values are 77 text tokens,
                                         not a feature map, so they are not offered)
  ffn-inner      Transformer2DModel      the feed-forward hidden after GEGLU (4 C channels)
  out            any module              the module's output

A bare path uses the model's default for resnets (`resnet_kind`): the UNet's taps are residual branches
(res-increment), the VAE decoder's are block outputs (res-out), as DiffSketch, DESIGN.md section 4 and
../shared/docs/reference/diffusion_features.md section 7.1 say. Names are resolved when the hooks are attached, so
adapters that replace modules (LoRA) are seen.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from diffusers.models.resnet import ResnetBlock2D

RES_INCREMENT, RES_OUT = "res-increment", "res-out"
ATTENTION_KINDS = {"attn-out": "", "self-q": "transformer_blocks.0.attn1.to_q",
                   "self-k": "transformer_blocks.0.attn1.to_k", "self-v": "transformer_blocks.0.attn1.to_v",
                   "cross-q": "transformer_blocks.0.attn2.to_q", "ffn-inner": "transformer_blocks.0.ff.net.0"}
RESNET_KINDS = (RES_INCREMENT, RES_OUT)
KINDS = RESNET_KINDS + tuple(ATTENTION_KINDS) + ("out",)


def split_tap(tap: str) -> tuple[str, str | None]:
    path, _, kind = tap.partition(":")
    return path, (kind or None)


def resolve(model: torch.nn.Module, tap: str, resnet_kind: str = RES_INCREMENT) -> torch.nn.Module:
    """The module whose forward output is the tap's value."""
    path, kind = split_tap(tap)
    try:
        module = model.get_submodule(path)
    except AttributeError:
        raise ValueError(f"No module named {path!r} in {type(model).__name__}") from None
    if kind is not None and kind not in KINDS:
        raise ValueError(f"Unknown tap kind {kind!r} in {tap!r}; known kinds: {', '.join(KINDS)}")
    if isinstance(module, ResnetBlock2D):
        kind = kind or resnet_kind
        if kind not in RESNET_KINDS + ("out",):
            raise ValueError(f"{tap!r}: a resnet tap is one of {', '.join(RESNET_KINDS)}")
        return module.conv2 if kind == RES_INCREMENT else module
    if kind in RESNET_KINDS:
        raise ValueError(f"{tap!r}: {kind} needs a ResnetBlock2D, {path!r} is a {type(module).__name__}")
    if kind in ATTENTION_KINDS and ATTENTION_KINDS[kind]:
        try:
            return module.get_submodule(ATTENTION_KINDS[kind])
        except AttributeError:
            raise ValueError(f"{tap!r}: {path!r} ({type(module).__name__}) has no {ATTENTION_KINDS[kind]}") from None
    return module


def catalogue(model: torch.nn.Module, prefix: str = "up_blocks") -> list[str]:
    """Every tap of every kind under `prefix` (e.g. "up_blocks", "mid_block", "down_blocks"), in module order."""
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    names = []
    for name, module in model.named_modules():
        if not name.startswith(prefix):
            continue
        if isinstance(module, ResnetBlock2D):
            names += [f"{name}:{k}" for k in RESNET_KINDS]
        elif isinstance(module, Transformer2DModel):
            names += [f"{name}:{k}" for k in ATTENTION_KINDS]
    return names


class AllTapsFired(Exception):
    """Raised from the last hook to skip the rest of a forward whose output nobody needs."""


class Taps:
    """Forward hooks on named taps for the length of a `with` block; hooks are always removed."""

    def __init__(self, model: torch.nn.Module, names: Sequence[str], early_exit: bool = False,
                 resnet_kind: str = RES_INCREMENT):
        self.model, self.names, self.early_exit, self.resnet_kind = model, list(names), early_exit, resnet_kind
        self.records: dict[str, list[torch.Tensor]] = {n: [] for n in self.names}
        self._fired: set[str] = set()
        self._handles: list = []

    def _hook(self, name: str):
        def hook(_module, _inputs, output):
            out = output[0] if isinstance(output, (tuple, list)) else getattr(output, "sample", output)
            self.records[name].append(out.detach())
            self._fired.add(name)
            if self.early_exit and len(self._fired) == len(self.names):
                raise AllTapsFired

        return hook

    def new_forward(self) -> None:
        self._fired.clear()

    def __enter__(self) -> "Taps":
        modules = [resolve(self.model, n, self.resnet_kind) for n in self.names]  # all checked before any hook
        self._handles = [m.register_forward_hook(self._hook(n)) for m, n in zip(modules, self.names)]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def to_nchw(t: torch.Tensor, latent_hw: tuple[int, int]) -> torch.Tensor:
    if t.ndim == 4:
        return t
    if t.ndim == 3:  # (B, L, C) tokens on a grid that is the latent grid downscaled by a power of two
        b, length, c = t.shape
        s = math.isqrt(max(1, latent_hw[0] * latent_hw[1] // length))
        h, w = latent_hw[0] // s, latent_hw[1] // s
        if h * w == length:
            return t.transpose(1, 2).reshape(b, c, h, w)
    raise ValueError(f"Cannot arrange a tap output of shape {tuple(t.shape)} as a feature map")


@torch.no_grad()
def describe(unet: torch.nn.Module, names: Sequence[str], latent_hw: tuple[int, int],
             resnet_kind: str = RES_INCREMENT) -> dict[str, tuple[int, int, int]]:
    """(C, H, W) of each UNet tap at a latent size, from a dry run of the same config on the meta device
    (no memory, no compute)."""
    cfg = dict(unet.config)
    with torch.device("meta"):
        ghost = type(unet).from_config(cfg)
        x = torch.empty(1, cfg["in_channels"], *latent_hw)
        emb = torch.empty(1, 77, cfg["cross_attention_dim"] if isinstance(cfg["cross_attention_dim"], int)
                          else cfg["cross_attention_dim"][0])
        kwargs = {}
        if cfg.get("addition_embed_type") == "text_time":
            kwargs["added_cond_kwargs"] = {"text_embeds": torch.empty(1, cfg["projection_class_embeddings_input_dim"]
                                                                      - 6 * cfg["addition_time_embed_dim"]),
                                           "time_ids": torch.empty(1, 6)}
        with Taps(ghost, names, early_exit=True, resnet_kind=resnet_kind) as taps:
            try:
                ghost(x, torch.tensor([1]), encoder_hidden_states=emb, **kwargs)
            except AllTapsFired:
                pass
    missing = [n for n, r in taps.records.items() if not r]
    if missing:
        raise ValueError(f"Taps {missing} never fire in a UNet forward")
    return {n: tuple(to_nchw(r[0], latent_hw).shape[1:]) for n, r in taps.records.items()}
