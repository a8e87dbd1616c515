"""Loading the shipped (or any saved) stroke checkpoints, and class names to model labels. Its own module so that
generation, recognizability and rectify can all use it without importing each other."""

from __future__ import annotations

import functools
from pathlib import Path

from ..checkpoints import load_saved
from ..errors import BadInputError
from .classifier import SketchClassifier, load_classifier
from .model import StrokeDenoiser
from .recognizability import RecognizabilityNet

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"
DEFAULT_MODEL = CHECKPOINTS / "stroke_diffusion"
DEFAULT_RECOGNIZABILITY = CHECKPOINTS / "recognizability"
DEFAULT_CLASSIFIER = CHECKPOINTS / "sketch_classifier"


@functools.lru_cache(maxsize=4)
def load_stroke_model(path: str | Path = DEFAULT_MODEL) -> StrokeDenoiser:
    return load_saved(StrokeDenoiser, path, "stroke-diffusion").eval().requires_grad_(False)


@functools.lru_cache(maxsize=4)
def load_recognizability(path: str | Path = DEFAULT_RECOGNIZABILITY):
    hint = (" The 'skip' and 'schedule' samplers need one (python -m "
            "diffsketch_core.strokes.fit_recognizability).")
    return load_saved(RecognizabilityNet, path, "recognizability", hint).eval().requires_grad_(False)


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
