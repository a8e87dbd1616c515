"""Saving our own small models the way we ship them (fp16 safetensors + config.json, diffusers save_pretrained),
and loading them back without letting another model's folder half-load."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import logging as diffusers_logging

from .errors import BadInputError


def save_fp16(model: ModelMixin, out: str | Path) -> None:
    """Write an fp16 copy of `model` to `out`; the model itself is left as it is (training goes on in fp32)."""
    half = copy.deepcopy(model).eval()
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # diffusers warns on every dtype cast; for export it is what we want
    try:
        half.to(torch.float16).save_pretrained(str(out), safe_serialization=True)
    finally:
        diffusers_logging.set_verbosity(level)


def load_saved(cls: type[ModelMixin], path: str | Path, what: str, hint: str = "") -> ModelMixin:
    """`cls` from a save_pretrained folder, in fp32, or a BadInputError that says `path` is not a `what` checkpoint
    (and `hint`). diffusers loads any config.json into any class with a warning, so the class is checked first:
    a classifier's folder given as the stroke model must be refused, not half-loaded. Safetensors only: a pickled
    .bin beside the config is never read."""
    config = Path(path) / "config.json"
    if config.is_file():
        try:
            named = json.loads(config.read_text()).get("_class_name")
            held = f"it holds a {named}" if named else "its config.json names no model class"
        except (ValueError, UnicodeDecodeError, AttributeError):
            named, held = None, "its config.json is unreadable"
        if named != cls.__name__:
            raise BadInputError(f"{path} is not a {what} checkpoint ({held}, not a {cls.__name__}).{hint}")
    try:
        return cls.from_pretrained(str(path), use_safetensors=True, torch_dtype=torch.float32)
    except (OSError, ValueError, TypeError, RuntimeError, KeyError) as exc:  # diffusers raises all of these
        raise BadInputError(f"{path} is not a {what} checkpoint ({type(exc).__name__}: {exc}).{hint}") from None
