"""ControlNet conditioning of the extraction forward (GATE, "Suppress Content Shift", issue 16).

Noise-and-extract makes the UNet imagine what the noise hid, so its features drift from the photo. A ControlNet fed
with the photo's own edges adds residuals to the very UNet forward whose activations we tap, steering it back.
GATE's recipe is an option (`steps` > 0): noise to t + steps, that many ControlNet-guided DDIM steps of one
timestep each back to t, then extract at t.

`load_controlnet(source, backbone)` takes a hub id or a local diffusers ControlNet folder (canny / HED / scribble /
lineart ControlNets of the backbone's family: e.g. lllyasviel/sd-controlnet-canny for SD 1.x,
thibaud/controlnet-sd21-canny-diffusers for SD 2.1, diffusers/controlnet-canny-sdxl-1.0 for SDXL, whose ControlNets
take the same added conditions as its UNet), or "tiny": a seeded random ControlNet built
from the backbone's UNet for tests and the demo (its zero convolutions perturbed so that it does something; never
a stand-in for real weights). The control image (B, 3, H, W) in [0, 1], white lines on black, is made by the caller
from the photo (the style wing uses our extractors; this wing does not import them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from diffusers import ControlNetModel

from .. import settings
from ..errors import MissingWeightsError
from .backbone import Backbone

TINY = "tiny"


@dataclass
class Control:
    model: ControlNetModel
    source: str
    scale: float = 1.0  # conditioning scale of the residuals
    steps: int = 0  # GATE: guided denoising steps from t + steps down to t before extracting at t


def tiny_controlnet(unet, seed: int = 0, perturb: bool = True) -> ControlNetModel:
    """ControlNetModel.from_unet of `unet`. Its zero convolutions (residual outputs and the control image's
    embedding output) start at zero, so its residuals are exactly 0; with `perturb` they get seeded random weights
    so the ControlNet, and the control image through it, change the features."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cn = ControlNetModel.from_unet(unet)
        if perturb:
            zero_convs = list(cn.controlnet_down_blocks) + [cn.controlnet_mid_block, cn.controlnet_cond_embedding.conv_out]
            for m in zero_convs:
                torch.nn.init.normal_(m.weight, std=0.05)
    cn = cn.to(unet.device) if cn.dtype == unet.dtype else cn.to(unet.device, unet.dtype)
    return cn.eval().requires_grad_(False)


def _missing(source: str, why: str) -> MissingWeightsError:
    return MissingWeightsError(
        f"ControlNet '{source}' is not available: {why}. Download a diffusers ControlNet for the backbone's family "
        "(e.g. lllyasviel/sd-controlnet-canny for SD 1.x, diffusers/controlnet-canny-sdxl-1.0 for SDXL) on a "
        "machine with internet and give its local folder as the style's ControlNet"
        f" (--controlnet, or the Style tab's advanced panel); {settings.SD_MODEL_ENV} does not cover it.")


def load_controlnet(source: str, backbone: Backbone) -> ControlNetModel:
    if source == TINY:
        if not backbone.is_demo:
            raise _missing(source, "the random test ControlNet only goes with a random (demo) backbone")
        return tiny_controlnet(backbone.unet)
    cn = pretrained_controlnet(source, backbone.dtype, _missing)
    if cn.config.cross_attention_dim != backbone.unet.config.cross_attention_dim or \
            cn.config.addition_embed_type != backbone.unet.config.addition_embed_type:
        raise _missing(source, f"it is made for another backbone (text width {cn.config.cross_attention_dim}, "
                               f"added conditions {cn.config.addition_embed_type}; the loaded one has "
                               f"{backbone.unet.config.cross_attention_dim}, {backbone.unet.config.addition_embed_type})")
    return cn.to(backbone.device).eval().requires_grad_(False)


def pretrained_controlnet(source: str, dtype: torch.dtype,
                          missing: Callable[[str, str], MissingWeightsError]) -> ControlNetModel:
    """A diffusers ControlNet from a local folder or a hub id; every failure is `missing(source, why)`, so each
    caller names the setting its users change."""
    local = Path(source).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise missing(source, "the folder has no config.json (is it a diffusers ControlNet?)")
        where, kw = str(local), {}
    elif settings.is_hub_id(source):
        where, kw = source, {"local_files_only": settings.hub_offline()}
    else:
        raise missing(source, "it is neither a local folder nor a hub id like 'owner/name'")
    try:
        return ControlNetModel.from_pretrained(where, torch_dtype=dtype, **kw)
    except Exception as exc:  # hub/network/filesystem errors come in many types; all mean "not here"
        raise missing(source, settings.load_failure(exc, from_hub=bool(kw))) from exc


def control_tensor(edges_img, size: tuple[int, int]) -> torch.Tensor:
    """A sketch (PIL, dark lines on white, as our extractors give) -> (1, 3, H, W) in [0, 1], white lines on
    black, the way line ControlNets were trained. size = (W, H) of the image the features are taken from."""
    from PIL import Image

    img = edges_img.convert("L")
    if img.size != size:
        img = img.resize(size, Image.Resampling.BILINEAR)
    arr = 1.0 - np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(arr)[None, None].expand(1, 3, -1, -1).contiguous()


def residuals(control: Control, x: torch.Tensor, t: torch.Tensor, cond: dict, image: torch.Tensor):
    """The ControlNet's (down residuals, mid residual) for one UNet forward; image: (N, 3, H, W). cond: the UNet's
    condition keywords (`Backbone.unet_kwargs`: an SDXL ControlNet takes the same added conditions)."""
    down, mid = control.model(x, t, **cond, controlnet_cond=image.to(x.device, x.dtype),
                              conditioning_scale=control.scale, return_dict=False)
    return {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
