"""Saving our own small models the way we ship them: fp16 safetensors + config.json (diffusers save_pretrained)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import logging as diffusers_logging


def save_fp16(model: ModelMixin, out: str | Path) -> None:
    """Write an fp16 copy of `model` to `out`; the model itself is left as it is (training goes on in fp32)."""
    half = copy.deepcopy(model).eval()
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # diffusers warns on every dtype cast; for export it is what we want
    try:
        half.to(torch.float16).save_pretrained(str(out), safe_serialization=True)
    finally:
        diffusers_logging.set_verbosity(level)
