"""Draw sketches with the shipped (or any saved) stroke diffusion model: the API the app uses.

    generate("apple", n=8, sampler="ddim", steps=30, seed=0) -> Generation(sketches, nfe, seconds, ...)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import BadInputError, DiffSketchError
from .classifier import SketchClassifier
from .diffusion import GUIDANCE_INTERVAL, StrokeDiffusion, uniform_timesteps
from .format import from_fixed
from .guidance import RATE as GUIDE_RATE, ClassifierGuidance, checked_rate
from .loaders import load_recognizability, load_sketch_classifier, load_stroke_model, resolve_class
from .model import StrokeDenoiser
from .recognizability import skip_sample

MAX_SKETCHES = 256
SAMPLERS = ("skip", "schedule", "ddim", "ddpm")


@dataclass
class Generation:
    sketches: list[np.ndarray]  # stroke-3, in the data's pixel units
    class_names: list[str | None]
    nfe: int  # network evaluations per sketch
    seconds: float
    sampler: str
    classifier_guidance: float = 0.0  # the guidance step size that was applied (0: none)


def _guiding_classifier() -> SketchClassifier:
    try:
        return load_sketch_classifier()
    except DiffSketchError as exc:
        raise DiffSketchError(f"Classifier guidance needs the sketch classifier: {exc} Pass classifier_guidance=0 "
                              "to draw without it.") from None


def generate(class_name: str | None | list[str | None] = None, n: int = 4, sampler: str = "skip", steps: int = 30,
             seed: int = 0, guidance: float = 4.0, guidance_interval: tuple[int, int] | None = GUIDANCE_INTERVAL,
             model: StrokeDenoiser | None = None, recognizability=None, classifier_guidance: float = GUIDE_RATE,
             classifier: SketchClassifier | None = None, cancel=None) -> Generation:
    """n sketches of `class_name` (None or "any": unconditional), or one per entry of a list of class names,
    all in one batch. sampler: "skip" (online recognizability skipping), "schedule" (precomputed from the r(t)
    curve), "ddim" (`steps` uniform steps) or "ddpm" (all 1000 steps). Guidance applies inside `guidance_interval`
    (timesteps lo..hi; None: at every step). classifier_guidance: the step size of classifier guidance toward
    recognisability (guidance.py; 0: off) with `classifier` (default: the shipped one); it applies when the
    classifier knows all the model's classes. `cancel` (a flag or a jobs.Deadline) stops sampling between steps."""
    names = list(class_name) if isinstance(class_name, (list, tuple)) else None
    if names is not None:
        n = len(names)
    if not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_SKETCHES:
        raise BadInputError(f"Number of sketches must be between 1 and {MAX_SKETCHES}, got {n!r}.")
    if sampler not in SAMPLERS:
        raise BadInputError(f"Unknown sampler {sampler!r}; choose one of: {', '.join(SAMPLERS)}.")
    classifier_guidance = checked_rate(classifier_guidance)
    model = model or load_stroke_model()
    ids = [resolve_class(model, c) for c in (names if names is not None else [class_name] * n)]
    diff = StrokeDiffusion(model.config.num_train_timesteps)
    labels = torch.tensor(ids)
    guide = None
    if classifier_guidance > 0:
        guide = ClassifierGuidance.for_model(model, classifier or _guiding_classifier(), classifier_guidance)
    start = time.perf_counter()
    if sampler in ("skip", "schedule"):
        h = recognizability or load_recognizability()
        if sampler == "skip":
            res = skip_sample(model, h, labels, guidance=guidance, guidance_interval=guidance_interval, seed=seed,
                              guide=guide, cancel=cancel)
        else:
            res = diff.sample(model, labels, list(h.config.schedule), guidance=guidance,
                              guidance_interval=guidance_interval, seed=seed, guide=guide, cancel=cancel)
    else:
        schedule = list(range(diff.T - 1, -1, -1)) if sampler == "ddpm" else uniform_timesteps(steps, diff.T)
        res = diff.sample(model, labels, schedule, method=sampler, guidance=guidance,
                          guidance_interval=guidance_interval, seed=seed, guide=guide, cancel=cancel)
    seconds = time.perf_counter() - start
    scale = model.config.offset_scale
    sketches = [from_fixed(o, p, scale) for o, p in zip(res.offsets.numpy(), res.pen.numpy())]
    out_names = [None if k == model.null_class else model.config.class_names[k] for k in ids]
    return Generation(sketches, out_names, res.nfe, seconds, sampler, guide.rate if guide else 0.0)
