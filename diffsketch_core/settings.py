"""Where pretrained weights come from. Read from the environment each time so tests and the app can
change them without restarting.

- DIFFSKETCH_SD_MODEL: Stable Diffusion 1.x hub id or local diffusers directory
  (default CompVis/stable-diffusion-v1-4, the model of the DiffSketch paper).
- DIFFSKETCH_WEIGHTS_DIR: directory with third-party annotator/metric weights laid out as
  hed/hed_bsds500.safetensors, pidinet/table5_pidinet.pth, lpips/alexnet_features.safetensors.
  Unset means "use the Hugging Face hub where a hub copy exists".
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import MissingWeightsError

DEFAULT_SD_MODEL = "CompVis/stable-diffusion-v1-4"
SD_MODEL_ENV = "DIFFSKETCH_SD_MODEL"
WEIGHTS_DIR_ENV = "DIFFSKETCH_WEIGHTS_DIR"


def sd_model() -> str:
    return os.environ.get(SD_MODEL_ENV) or DEFAULT_SD_MODEL


def weights_dir() -> Path | None:
    """The configured weights directory, or None when unset. A set but missing directory is an error:
    silently falling back to the hub would hide a typo."""
    value = os.environ.get(WEIGHTS_DIR_ENV)
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise MissingWeightsError(f"{WEIGHTS_DIR_ENV}={value!r} is not a directory. Point it at a folder laid out "
                                  "like hed/, pidinet/, lpips/ (see README, 'Weights'), or unset it to use the hub.")
    return path


CONTROLNET_ENV = "DIFFSKETCH_CONTROLNET"


def controlnet_model() -> str | None:
    """Sketch -> Picture's scribble/lineart ControlNet: hub id or local diffusers folder; None when unset."""
    return os.environ.get(CONTROLNET_ENV) or None


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def is_hub_id(source: str) -> bool:
    """'owner/name', not a path (a path that does not exist is an error, not a hub id)."""
    return source.count("/") == 1 and not source.startswith((".", "/", "~"))


def load_failure(exc: Exception, from_hub: bool) -> str:
    """Why a hub or folder load failed, for a "... is not available: <why>" message."""
    offline = " (HF_HUB_OFFLINE is set and it is not in the local cache)" if from_hub and hub_offline() else ""
    return f"{type(exc).__name__}{offline}"
