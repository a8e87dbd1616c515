"""Rectification and healing of rough sketches with the stroke diffusion model.

rectify: SDEdit plus perceptual guidance. The rough sketch is noised to t0 = strength * T and denoised by the
class-conditional model (which knows what clean sketches of the class look like); at every step the predicted x0
is pulled toward the rough drawing by the gradient of a perceptual distance between soft renders (LPIPS-alex,
or the project's classifier features), so the result stays what the artist meant.

heal: RePaint-style completion. The known points (the strokes that are there) are re-imposed at every step at
the current noise level, and exactly at the end; the model fills in the rest and decides where it ends.

Inputs: stroke polylines in canvas pixels (what the drawing canvas sends), stroke-3 arrays, or raster drawings
(vectorised). Outputs are stroke-3 in the input's own pixel frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BadInputError
from .classifier import SketchClassifier
from .diffusion import StrokeDiffusion
from .format import from_fixed, polylines_to_stroke3, to_fixed, validate_stroke3
from .model import StrokeDenoiser
from .soft_raster import draw_weights, soft_render, to_canvas

MODEL_EXTENT = 200.0  # the training sketches span about 200 px; inputs are rescaled to that
MAX_COORD = 1e5
RENDER = 64
GUIDE_STEPS, GUIDE_RATE = 3, 0.05  # per denoising step: 3 steps of 0.05 * guidance (RMS, normalised units)


@dataclass
class RectifyResult:
    sketch: np.ndarray  # stroke-3 in the input's pixel frame
    rough: np.ndarray  # the input as stroke-3 (same frame)
    class_name: str | None
    nfe: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    confidence_before: float | None = None  # the classifier's probability of the class, rough vs result
    confidence_after: float | None = None


def _confidences(classifier, class_name, rough: np.ndarray, out: np.ndarray) -> tuple[float | None, float | None]:
    if classifier is None or class_name is None or class_name not in classifier.config.class_names:
        return None, None
    k = list(classifier.config.class_names).index(class_name)
    probs, _ = classifier.predict([rough, out])
    return float(probs[0, k]), float(probs[1, k])


def polylines_to_sketch(polylines) -> np.ndarray:
    """Canvas polylines [[[x, y], ...], ...] -> stroke-3, refusing what cannot be a sketch."""
    if polylines is None or len(polylines) == 0:
        raise BadInputError("The canvas is empty: draw something first.")
    polys = []
    for line in polylines:
        arr = np.asarray(line, dtype=np.float64).reshape(-1, 2) if len(line) else np.zeros((0, 2))
        if len(arr):
            polys.append(arr)
    if not polys:
        raise BadInputError("The canvas is empty: draw something first.")
    pts = np.concatenate(polys)
    if not np.isfinite(pts).all() or np.abs(pts).max() > MAX_COORD:
        raise BadInputError(f"Stroke coordinates are out of range (they must be finite and within +-{MAX_COORD:g} px).")
    if len(pts) < 2 or np.ptp(pts, axis=0).max() < 2:
        raise BadInputError("The drawing is a single dot; draw at least one line.")
    return polylines_to_stroke3(polys)


def _as_sketch(source) -> np.ndarray:
    if isinstance(source, np.ndarray) and source.ndim == 2 and source.shape[1] == 3:
        return validate_stroke3(source)
    if isinstance(source, (list, tuple)):
        return polylines_to_sketch(source)
    from .vectorize import vectorize

    return vectorize(source)


@dataclass
class _Frame:
    """Maps between the input's pixel frame and the model's normalised frame."""
    start: np.ndarray
    factor: float  # input px -> model px
    scale: float  # model px -> normalised offsets

    def to_model(self, s: np.ndarray) -> np.ndarray:
        out = s.copy()
        out[0, :2] = 0
        out[:, :2] *= self.factor
        return out

    def to_input(self, s: np.ndarray) -> np.ndarray:
        out = s.copy()
        out[:, :2] /= self.factor
        out[0, :2] += self.start
        return out


def _frame(sketch: np.ndarray, scale: float) -> _Frame:
    pts = np.cumsum(sketch[:, :2], axis=0)
    extent = max(float(np.ptp(pts, axis=0).max()), 1.0)
    return _Frame(sketch[0, :2].astype(np.float64).copy(), MODEL_EXTENT / extent, scale)


class Perceptual:
    """Distance between ink renders (B, S, S): LPIPS-alex, or the classifier's embedding distance."""

    def __init__(self, kind: str, classifier: SketchClassifier | None = None):
        self.kind = kind
        if kind == "lpips":
            from ..losses import load_lpips
            self.net = load_lpips()
        elif kind == "classifier":
            if classifier is None:
                raise ValueError("classifier features need a classifier")
            self.net = classifier
        else:
            raise BadInputError(f"Unknown perceptual distance {kind!r}; use 'lpips' or 'classifier'.")

    def __call__(self, ink: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.kind == "lpips":
            up = lambda x: F.interpolate((1 - 2 * x).unsqueeze(1), size=128, mode="bilinear").expand(-1, 3, -1, -1)  # noqa: E731
            return self.net(up(ink), up(target)).mean()
        f = lambda x: self.net.features(x.unsqueeze(1))  # noqa: E731
        return (f(ink) - f(target)).pow(2).mean()


def _fit(points: torch.Tensor, size: int = RENDER, margin: float = 0.1) -> tuple[float, torch.Tensor]:
    lo, hi = points.amin(dim=(0, 1)), points.amax(dim=(0, 1))
    extent = float((hi - lo).max().clamp_min(1e-6))
    scale = size * (1 - 2 * margin) / extent
    return scale, size / 2 - scale * (lo + hi) / 2


def _pen_onehot(pen: torch.Tensor) -> torch.Tensor:
    return F.one_hot(pen, 3).float()


@torch.enable_grad()
def _guide(x0: torch.Tensor, logits: torch.Tensor, target: torch.Tensor, fit, perceptual: "Perceptual",
           eta: float) -> torch.Tensor:
    """One normalised gradient step of the perceptual distance on the predicted sketch's *absolute* points.
    Stepping on absolute points moves each point locally; the same step on offsets would drag every later
    point along (measured: offset-space steps made the result drift away from the drawing)."""
    pts = torch.cumsum(x0.detach(), 1).requires_grad_(True)
    ink = soft_render(pts * fit[0] + fit[1], draw_weights(logits.softmax(-1)), RENDER)
    (g,) = torch.autograd.grad(perceptual(ink, target), pts)
    pts = pts.detach() - eta * g / (g.pow(2).mean().sqrt() + 1e-12)
    return torch.diff(pts, dim=1, prepend=torch.zeros_like(pts[:, :1]))


def _denoise(model: StrokeDenoiser, x0_start: torch.Tensor, label: int, t0: int, steps: int, seed: int,
             cfg: float, guidance: float, perceptual: Perceptual | None, target: torch.Tensor | None, fit,
             known: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    diff = StrokeDiffusion(model.config.num_train_timesteps)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(x0_start.shape, generator=gen)
    ts = sorted({int(round(v)) for v in np.linspace(t0, 0, max(2, steps))}, reverse=True)
    x = diff.q_sample(x0_start, torch.tensor([t0]), noise)
    labels = torch.tensor([label])
    logits = None
    for i, t in enumerate(ts):
        tt = torch.tensor([t])
        with torch.no_grad():
            eps, logits = diff.guided(model, x, tt, labels, cfg)
            x0 = diff.predict_x0(x, tt, eps)
        if guidance > 0 and perceptual is not None:
            ab = diff._ab(tt)[:, None, None]
            for _ in range(GUIDE_STEPS):
                x0 = _guide(x0, logits, target, fit, perceptual, GUIDE_RATE * guidance)
            eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
        t_next = ts[i + 1] if i + 1 < len(ts) else -1
        x = diff.ddim_step(x, t, t_next, eps) if guidance <= 0 else _ddim_from_x0(diff, x0, eps, t_next)
        if known is not None:  # RePaint: the known points at the next noise level (exact at the end)
            x_known = diff.q_sample(x0_start, torch.tensor([t_next]), noise) if t_next >= 0 else x0_start
            x = torch.where(known[..., None], x_known, x)
    return x, logits, len(ts)


def _ddim_from_x0(diff: StrokeDiffusion, x0: torch.Tensor, eps: torch.Tensor, t_next: int) -> torch.Tensor:
    ab_next = diff._ab(torch.tensor([t_next]))[:, None, None]
    return ab_next.sqrt() * x0 + (1 - ab_next).sqrt() * eps


def _classify(classifier: SketchClassifier | None, sketch: np.ndarray) -> np.ndarray | None:
    return None if classifier is None else classifier.predict([sketch])[0][0]


def _resolve_label(model: StrokeDenoiser, classifier, class_name, sketch_model) -> tuple[int, list[str]]:
    from .generate import resolve_class

    if class_name:
        return resolve_class(model, class_name), []
    if classifier is None:
        return model.null_class, ["No class given and no classifier: rectified without a class."]
    probs = _classify(classifier, sketch_model)
    k = int(np.argmax(probs))
    names = list(classifier.config.class_names)
    label = resolve_class(model, names[k]) if names[k] in model.config.class_names else model.null_class
    return label, [f"Class inferred by the classifier: {names[k]} ({probs[k]:.0%})."]


def rectify(source, model: StrokeDenoiser, classifier: SketchClassifier | None = None, class_name: str | None = None,
            strength: float = 0.5, guidance: float = 2.0, steps: int = 40, seed: int = 0, cfg: float = 4.0,
            perceptual: str = "lpips") -> RectifyResult:
    """Pull a rough sketch (polylines, stroke-3 or raster) toward a clean one of its class."""
    if not 0 < strength <= 1:
        raise BadInputError("Strength must be in (0, 1].")
    start = time.perf_counter()
    rough = _as_sketch(source)
    frame = _frame(rough, model.config.offset_scale)
    s_model = frame.to_model(rough)
    notes = []
    if len(s_model) > model.config.max_len:
        notes.append(f"The drawing has {len(s_model)} points; simplified to the model's {model.config.max_len}.")
    label, more = _resolve_label(model, classifier, class_name, s_model)
    notes += more
    offsets, pen, _ = to_fixed(s_model, model.config.max_len, frame.scale)
    x0 = torch.from_numpy(offsets)[None]
    perc, target, fit = None, None, None
    if guidance > 0:
        try:
            perc = Perceptual(perceptual, classifier)
        except Exception as exc:  # LPIPS weights missing: fall back to the classifier, and say so
            if classifier is None:
                raise
            perc = Perceptual("classifier", classifier)
            notes.append(f"LPIPS unavailable ({type(exc).__name__}); guided by classifier features instead.")
        pts = to_canvas(x0, 1.0, torch.zeros(2))
        fit = _fit(pts)
        with torch.no_grad():
            target = soft_render(to_canvas(x0, *fit), draw_weights(_pen_onehot(torch.from_numpy(pen)[None])), RENDER)
    t0 = int(round(strength * (model.config.num_train_timesteps - 1)))
    x, logits, nfe = _denoise(model, x0, label, t0, steps, seed, cfg, guidance, perc, target, fit)
    out = frame.to_input(from_fixed(x[0].numpy(), logits[0].argmax(-1).numpy(), frame.scale))
    name = None if label == model.null_class else model.config.class_names[label]
    return RectifyResult(out, rough, name, nfe, time.perf_counter() - start, notes,
                         *_confidences(classifier, name, rough, out))


def heal(source, model: StrokeDenoiser, classifier: SketchClassifier | None = None, class_name: str | None = None,
         steps: int = 50, seed: int = 0, cfg: float = 4.0) -> RectifyResult:
    """Complete an incomplete sketch: its points are kept exactly, the model draws what is missing after them."""
    start = time.perf_counter()
    rough = _as_sketch(source)
    frame = _frame(rough, model.config.offset_scale)
    s_model = frame.to_model(rough)
    n_max = model.config.max_len
    if len(s_model) >= n_max:
        raise BadInputError(f"The sketch already has {len(s_model)} points, the model's maximum; nothing left to fill.")
    label, notes = _resolve_label(model, classifier, class_name, s_model)
    offsets, pen, n = to_fixed(s_model, n_max, frame.scale)
    known = torch.zeros(1, n_max, dtype=torch.bool)
    known[0, :n] = True
    x, logits, nfe = _denoise(model, torch.from_numpy(offsets)[None], label, model.config.num_train_timesteps - 1,
                              steps, seed, cfg, 0.0, None, None, None, known)
    pen_out = logits[0].argmax(-1).numpy()
    pen_out[:n] = pen[:n]  # the known strokes stay as drawn; new strokes start with a pen-up move
    out = frame.to_input(from_fixed(x[0].numpy(), pen_out, frame.scale))
    name = None if label == model.null_class else model.config.class_names[label]
    return RectifyResult(out, rough, name, nfe, time.perf_counter() - start, notes,
                         *_confidences(classifier, name, rough, out))
