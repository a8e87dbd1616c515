"""Loading the shipped (or any saved) stroke checkpoints, and class names to model labels. Its own module so that
generation, recognizability and rectify can all use it without importing each other."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from ..errors import BadInputError, DiffSketchError
from .classifier import SketchClassifier, load_classifier
from .model import StrokeDenoiser
from .recognizability import RecognizabilityNet

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"
DEFAULT_MODEL = CHECKPOINTS / "stroke_diffusion"
DEFAULT_RECOGNIZABILITY = CHECKPOINTS / "recognizability"
DEFAULT_CLASSIFIER = CHECKPOINTS / "sketch_classifier"


@functools.lru_cache(maxsize=4)
def load_stroke_model(path: str | Path = DEFAULT_MODEL) -> StrokeDenoiser:
    try:
        model = StrokeDenoiser.from_pretrained(str(path), torch_dtype=torch.float32)
    except (OSError, ValueError, TypeError) as exc:
        raise DiffSketchError(f"{path} is not a stroke-diffusion checkpoint ({exc}).") from None
    return model.eval().requires_grad_(False)


@functools.lru_cache(maxsize=4)
def load_recognizability(path: str | Path = DEFAULT_RECOGNIZABILITY):
    try:
        net = RecognizabilityNet.from_pretrained(str(path), torch_dtype=torch.float32)
    except (OSError, ValueError, TypeError) as exc:
        raise DiffSketchError(f"{path} is not a recognizability checkpoint ({exc}); the 'skip' and 'schedule' "
                              "samplers need one (python -m diffsketch_core.strokes.fit_recognizability).") from None
    return net.eval().requires_grad_(False)


@functools.lru_cache(maxsize=4)
def load_sketch_classifier(path: str | Path = DEFAULT_CLASSIFIER) -> SketchClassifier:
    return load_classifier(path).requires_grad_(False)


def resolve_class(model: StrokeDenoiser, class_name: str | None) -> int:
    if class_name is None or class_name == "" or str(class_name).lower() == "any":
        return model.null_class
    names = list(model.config.class_names)
    key = str(class_name).strip().lower().replace(" ", "_")
    if key not in names:
        raise BadInputError(f"Unknown class {class_name!r}; choose one of: {', '.join(names)} (or none for any).")
    return names.index(key)
