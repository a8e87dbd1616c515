"""The scribble/lineart ControlNet that can steer Sketch -> Picture, by hub id or local diffusers folder.

Source: the explicit argument, else $DIFFSKETCH_CONTROLNET, else DEFAULT_CONTROLNET. "zero-init" builds
`ControlNetModel.from_unet(backbone.unet)`: a ControlNet whose zero convolutions make it change nothing; it exists
to test the wiring and to measure cost with random backbones, and says so (`is_zero_init`).
"""

from __future__ import annotations

from dataclasses import dataclass

from diffusers import ControlNetModel

from .. import settings
from ..diffusion.backbone import Backbone
from ..diffusion.controlnet import pretrained_controlnet
from ..errors import MissingWeightsError

DEFAULT_CONTROLNET = "lllyasviel/control_v11p_sd15_scribble"
ZERO_INIT = "zero-init"


@dataclass
class ControlNet:
    model: ControlNetModel
    source: str
    is_zero_init: bool


def controlnet_source(source: str | None = None) -> str:
    return source or settings.controlnet_model() or DEFAULT_CONTROLNET


def load_controlnet(backbone: Backbone, source: str | None = None) -> ControlNet:
    source = controlnet_source(source)
    if source == ZERO_INIT:
        model = ControlNetModel.from_unet(backbone.unet)
    else:
        model = pretrained_controlnet(source, backbone.dtype, _missing)
        if model.config.cross_attention_dim != backbone.unet.config.cross_attention_dim:
            raise MissingWeightsError(
                f"ControlNet '{source}' was made for a different Stable Diffusion (cross-attention width "
                f"{model.config.cross_attention_dim}, the backbone has {backbone.unet.config.cross_attention_dim}). "
                f"Set {settings.CONTROLNET_ENV} (or --controlnet) to an SD-1.x scribble or lineart ControlNet.")
    model.requires_grad_(False).eval().to(backbone.device)
    if model.dtype != backbone.dtype:  # from_unet builds in fp32; pretrained ones already come in the backbone's dtype
        model.to(backbone.dtype)
    return ControlNet(model, source, source == ZERO_INIT)


def _missing(source: str, why: str) -> MissingWeightsError:
    return MissingWeightsError(
        f"ControlNet '{source}' is not available: {why}. Download a diffusers copy of {DEFAULT_CONTROLNET} (or "
        "lllyasviel/control_v11p_sd15_lineart) on a machine with internet and point "
        f"{settings.CONTROLNET_ENV} (or --controlnet) at its folder, or turn the ControlNet off.")
