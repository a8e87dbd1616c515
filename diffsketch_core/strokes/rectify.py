"""Rectification and healing of rough sketches with the stroke diffusion model.

rectify: SDEdit plus perceptual guidance. The rough sketch is noised to t0 = strength * T (per sketch; "auto" sets
it from how well the classifier already reads the drawing) and denoised by the
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
from ..jobs import check
from .classifier import SketchClassifier
from .diffusion import GUIDANCE_INTERVAL, StrokeDiffusion, with_pen
from .format import drop_dots, fit_length, from_fixed, polylines_to_stroke3, simplify, to_fixed, validate_stroke3
from .guidance import ClassifierGuidance, checked_rate, fit_to_canvas
from .loaders import resolve_class
from .model import StrokeDenoiser
from .soft_raster import draw_weights, soft_render

MODEL_EXTENT = 255.0  # QuickDraw sketches (the training data) are scaled to span 0..255 px; inputs are rescaled to that
MAX_COORD = 1e5
MODEL_RDP = 1.0  # px of the 255-px frame (the training sketches were simplified at 2.0)
RENDER = 64
# "auto" strength from the classifier's confidence p in the class: lo + (hi - lo)(1 - p)^gamma (tuned on valid)
AUTO_STRENGTH = (0.01, 0.9, 4.0)
GUIDE_STEPS, GUIDE_RATE = 3, 0.05  # per denoising step: 3 steps of 0.05 * guidance (RMS, normalised units)
# 10 steps rectify as well as 25 at 2.5x the speed (40 valid sketches, LPIPS guidance 1: 50% deformation 7.5% ->
# 45% recognised at 2.9 s/sketch; 25 steps: 15% -> 50% on 20 test sketches at 7.2 s/sketch)
RECTIFY_STEPS = 10
# Classifier-free guidance: rectify guides at every step, heal only inside GUIDANCE_INTERVAL (200 valid sketches:
# guided throughout, rectify gained +2 / +26.5 / +39 points at 0 / 30 / 50% deformation against -1 / +21 / +35
# inside the interval, and healing lost 6 / 8 points at 10 / 30% masked against 3.5 / 1)
RECTIFY_CFG_INTERVAL, HEAL_CFG_INTERVAL = None, GUIDANCE_INTERVAL
# Stochastic DDIM with eta = the sketch's strength: a sketch that is redrawn from far gets fresh noise at every
# step, which lets later steps undo early mistakes, and a touch-up stays deterministic (1000 valid sketches,
# recognition gain at 0 / 30 / 50% deformation: eta 0: +0.8 / +24.8 / +37.9; eta 1: -1.3 / +25.5 / +43.7;
# eta = strength: +0.7 / +24.2 / +39.7)
RECTIFY_ETA = "strength"
# A touch-up returns the input, a redraw is free: x0_hat is pulled back to the input point by point with the share
# ANCHOR[0] * (1 - strength / ANCHOR[1]) (0 from strength 0.3 up; see _anchor). Without it, the noise of even
# strength 0.01 left the result 2-3 px away (40 valid sketches, no guidance: median 1.49 px, mean 2.89 px on a
# 256-px canvas, where a 1-px shift measures 0.70); with it the median is 0.06 px.
ANCHOR = (1.0, 0.3)
HEAL_KNOWN = 0.75  # heal keeps at most this share of the model's points, so there is room to add strokes
# Fewer denoising steps heal better: on 100 valid sketches with 10% / 30% of strokes masked, recognition moved
# +0 / -1 points with 6 steps, -5 / -4 with 10, -8 / -2 with 20 and -9 with 50 (the old default)
HEAL_STEPS = 6
# RePaint's resampling (each step redone after noising back) did not pay either: 300 valid sketches, 30% of strokes
# masked, recognised 0.517 before healing; after: 0.510 (1, the default), 0.500 (2), 0.543 (3, at 4x the time), within
# the noise of 300 sketches (about 3 points). Nor did more guidance (CFG 6: 0.473; at every step: 0.483) or other
# step counts (4: 0.467, 10: 0.473).
HEAL_RESAMPLE = 1
# Classifier guidance (guidance.py) toward the class, through the project's classifier; a touch-up gets little of it
# (1 - the anchor's share). 100 valid sketches, app defaults otherwise, recognised before -> after by the project's
# classifier / the independent one that never guides, without -> with guidance 0.15:
#   deform 0%:  0.90 -> 0.95 / 0.95 -> 0.93   ->  0.90 -> 1.00 / 0.95 -> 0.97  (median distance 0.06 -> 0.08 px)
#   deform 50%: 0.10 -> 0.54 / 0.14 -> 0.50   ->  0.10 -> 1.00 / 0.14 -> 0.86
#   heal, 30% of strokes masked: 0.60 -> 0.60 / 0.62 -> 0.57   ->  0.60 -> 0.75 / 0.62 -> 0.67
RECTIFY_CLASSIFIER_GUIDANCE = HEAL_CLASSIFIER_GUIDANCE = 0.15
# Reconstruction guidance (Ho et al. 2022: the unknown points moved along the gradient that makes the model's
# prediction of the known ones match them) healed worse: 60 valid sketches, 30% of strokes masked, 0.517 before,
# 0.617 after without it, 0.600 / 0.483 with rates 0.05 / 0.2, at twice the time; so heal is RePaint alone.


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


def _class_prob(classifier, probs: np.ndarray, class_name: str | None) -> float | None:
    """The classifier's probability of `class_name` in one row of its output (None when it does not know it)."""
    names = list(classifier.config.class_names)
    return float(probs[names.index(class_name)]) if class_name in names else None


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
    """Per-sketch distance between ink renders (B, S, S) -> (B,): LPIPS-alex, or the classifier's embedding
    distance. Summed over the batch by the caller, each sketch's gradient is its own."""

    def __init__(self, kind: str, classifier: SketchClassifier | None = None):
        self.kind = kind
        if kind == "lpips":
            from ..perceptual import load_lpips
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
            return self.net(up(ink), up(target)).flatten(1).mean(1)
        f = lambda x: self.net.features(x.unsqueeze(1))  # noqa: E731
        return (f(ink) - f(target)).pow(2).flatten(1).mean(1)


def _fit(points: torch.Tensor, size: int = RENDER, margin: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sketch (scale (B, 1, 1), shift (B, 1, 2)) that fits absolute points (B, N, 2) into the render."""
    return fit_to_canvas(points, size, margin)


def _pen_onehot(pen: torch.Tensor) -> torch.Tensor:
    return F.one_hot(pen, 3).float()


@torch.enable_grad()
def _guide(x0: torch.Tensor, logits: torch.Tensor, target: torch.Tensor, fit, perceptual: "Perceptual",
           rate: float) -> torch.Tensor:
    """One normalised gradient step (per sketch) of the perceptual distance on the predicted sketch's *absolute*
    points (the pen channel, if any, is left alone). Stepping on absolute points moves each point locally; the
    same step on offsets would drag every later point along (measured: offset-space steps made the result drift
    away from the drawing)."""
    pts = torch.cumsum(x0[..., :2].detach(), 1).requires_grad_(True)
    ink = soft_render(pts * fit[0] + fit[1], draw_weights(logits.softmax(-1)), RENDER)
    (g,) = torch.autograd.grad(perceptual(ink, target).sum(), pts)
    pts = pts.detach() - rate * g / (g.pow(2).mean(dim=(1, 2), keepdim=True).sqrt() + 1e-12)
    return torch.cat([torch.diff(pts, dim=1, prepend=torch.zeros_like(pts[:, :1])), x0[..., 2:]], -1)


def _guide_scale(diff: StrokeDiffusion, t: torch.Tensor) -> torch.Tensor:
    """(B, 1, 1) share of the guidance step at timesteps t: the noise level of x0_hat, sigma_t / sqrt(alpha-bar_t),
    capped at 1. A normalised step has the same size however close the drawing already is, so at full size near
    t = 0 it only shakes the points (issue 15's zig-zag apple: total turning 2x the input's at strength 0.01);
    scaled by the noise level it fades out where the model's own uncertainty does, and steps from far are unchanged
    (1 above t ~ 250)."""
    ab = diff._ab(t)
    return ((1 - ab).sqrt() / ab.sqrt()).clamp(max=1.0)[:, None, None]


def _anchor(x0: torch.Tensor, x0_start: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Pull the predicted sketch the share `weight` (B,) of the way back to the input, point by point (SDEdit keeps
    the sequence: point k of the result is point k of the input redrawn), in absolute positions so that drift does
    not accumulate along the offsets, and the pen channel with them. A touch-up (strength near 0, weight near 1)
    then returns the input itself rather than the input plus the noise the model did not quite remove."""
    w = weight[:, None, None]
    pts, target = torch.cumsum(x0[..., :2], 1), torch.cumsum(x0_start[..., :2], 1)
    pts = pts + w * (target - pts)
    rest = x0[..., 2:] + w * (x0_start[..., 2:] - x0[..., 2:])
    return torch.cat([torch.diff(pts, dim=1, prepend=torch.zeros_like(pts[:, :1])), rest], -1)


def _denoise(model: StrokeDenoiser, x0_start: torch.Tensor, labels: torch.Tensor, t0: torch.Tensor, steps: int,
             seed: int, cfg: float, cfg_interval: tuple[int, int] | None, guidance: float = 0.0,
             perceptual: Perceptual | None = None, target: torch.Tensor | None = None, fit=None,
             known: torch.Tensor | None = None, eta: float | torch.Tensor = 0.0,
             anchor: torch.Tensor | None = None, resample: int = 1, guide: ClassifierGuidance | None = None,
             guide_weight: torch.Tensor | None = None, cancel=None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """DDIM (stochastic by `eta`, per row or one for all) from x0_start noised to a per-sketch t0 (B,) down to 0 in
    `steps` steps, each row on its own uniform schedule; optional classifier guidance (`guide`, each row's steps
    scaled by `guide_weight` (B,)) and perceptual guidance on x0_hat, `anchor` (B,) pull of x0_hat back to x0_start
    (see `_anchor`) and RePaint re-imposition of `known` points (B, N)."""
    if guide is not None and guide_weight is None:
        guide_weight = torch.ones(len(labels))
    diff = StrokeDiffusion(model.config.num_train_timesteps)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(x0_start.shape, generator=gen)
    n = max(2, steps)
    grid = torch.linspace(1, 0, n)[None] * t0.float()[:, None]  # (B, n)
    ts = torch.cat([grid.round().long(), torch.full_like(t0[:, None], -1)], 1)
    x = diff.q_sample(x0_start, ts[:, 0], noise)
    logits = None
    for i in range(n):
        t, t_next = ts[:, i], ts[:, i + 1]
        for u in range(resample):
            check(cancel)
            with torch.no_grad():
                eps, logits = diff.guided(model, x, t, labels, diff.guidance_at(t, cfg, cfg_interval))
                x0 = diff.predict_x0(x, t, eps)
            moved = anchor is not None or (guidance > 0 and perceptual is not None)
            rows = guide.active(t) & (guide_weight > 0) if guide is not None else None
            if rows is not None and bool(rows.any()):
                x0[rows] = guide(x0[rows], logits[rows], labels[rows], guide_weight[rows])
                moved = True
            if guidance > 0 and perceptual is not None:
                rate = GUIDE_RATE * guidance * _guide_scale(diff, t)
                for _ in range(GUIDE_STEPS):
                    x0 = _guide(x0, logits, target, fit, perceptual, rate)
            if anchor is not None:
                x0 = _anchor(x0, x0_start, anchor)
            if moved:
                eps = diff.eps_from_x0(x, t, x0)
            x = diff.ddim_next(x0, eps, t, t_next, eta, torch.randn(x.shape, generator=gen))  # x0 at the last step
            if known is not None:  # RePaint: the known points at the next noise level (exact at the end)
                x = torch.where(known[..., None], diff.q_sample(x0_start, t_next, noise), x)
            if u < resample - 1 and bool((t_next >= 0).all()):  # RePaint's resampling: back to t, denoise again
                a = (diff._ab(t) / diff._ab(t_next))[:, None, None]
                x = a.sqrt() * x + (1 - a).sqrt() * torch.randn(x.shape, generator=gen)
    return x, logits, n * resample


def _classifier_guide(model: StrokeDenoiser, classifier: SketchClassifier | None,
                      rate: float) -> ClassifierGuidance | None:
    rate = checked_rate(rate)
    return None if classifier is None else ClassifierGuidance.for_model(model, classifier, rate)


def _resolve_labels(model: StrokeDenoiser, classifier, class_names: list[str | None],
                    probs: np.ndarray | None) -> tuple[list[int], list[list[str]]]:
    """The given class per sketch, or the classifier's guess from its `probs` (said in a note), or unconditional."""

    labels, notes = [resolve_class(model, c) if c else None for c in class_names], [[] for _ in class_names]
    for i in [i for i, k in enumerate(labels) if k is None]:
        if probs is None:
            labels[i] = model.null_class
            notes[i].append("No class given and no classifier: rectified without a class.")
            continue
        k = int(np.argmax(probs[i]))
        name = classifier.config.class_names[k]
        labels[i] = resolve_class(model, name) if name in model.config.class_names else model.null_class
        notes[i].append(f"Class inferred by the classifier: {name} ({probs[i, k]:.0%}).")
    return labels, notes


@dataclass
class _Prepared:
    rough: np.ndarray
    frame: _Frame
    offsets: np.ndarray
    pen: np.ndarray
    n: int
    notes: list[str]


def _prepare(source, model: StrokeDenoiser, limit: int | None = None) -> _Prepared:
    """The input in the model's frame and fixed length, simplified to `limit` points (default: all of max_len)."""
    rough = _as_sketch(source)
    frame = _frame(rough, model.config.offset_scale)
    s_model = frame.to_model(rough)
    limit = limit or model.config.max_len
    notes = []
    # the density of the training data (QuickDraw's own RDP simplification in its 255-px frame): denser strokes
    # than the model was trained on turn the same per-offset noise into zig-zags it does not remove
    simple = fit_length(simplify(s_model, MODEL_RDP), limit)
    if len(simple) < len(s_model):
        notes.append(f"The drawing has {len(s_model)} points; simplified to {len(simple)} for the model "
                     f"(at most {limit}).")
    s_model = simple
    offsets, pen, n = to_fixed(s_model, model.config.max_len, frame.scale)
    return _Prepared(rough, frame, offsets, pen, n, notes)


def model_round_trip(source, model: StrokeDenoiser) -> np.ndarray:
    """The input as the model sees it, given back in the input's frame: what rectify would return if the model
    changed nothing (the floor of every closeness measure)."""
    p = _prepare(source, model)
    return p.frame.to_input(from_fixed(p.offsets, p.pen, p.frame.scale))


def _as_list(value, n: int) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


def _start(sources: list, model: StrokeDenoiser, classifier, class_names, limit: int | None = None):
    """What rectify and heal share: the prepared inputs, the classifier's view of them (computed once), the
    labels and per-sketch notes, and the batch (offsets, pen) as tensors."""
    preps = [_prepare(s, model, limit) for s in sources]
    probs = None if classifier is None else classifier.predict([p.rough for p in preps])[0]
    labels, notes = _resolve_labels(model, classifier, _as_list(class_names, len(preps)), probs)
    offsets = torch.from_numpy(np.stack([p.offsets for p in preps]))
    pen = torch.from_numpy(np.stack([p.pen for p in preps]))
    return preps, probs, labels, notes, offsets, pen


def _finish(model, classifier, preps: list[_Prepared], probs: np.ndarray | None, labels: list[int],
            notes: list[list[str]], x, pen_out, nfe: int, seconds: float, known: bool = False) -> list[RectifyResult]:
    """Stroke-3 results in each input's frame; with `known`, the input's own points are kept as they are (its
    dots included) and only the model's additions lose their one-point specks."""
    outs = []
    for i, p in enumerate(preps):
        s = from_fixed(x[i, :, :2].numpy(), pen_out[i], p.frame.scale, dots=known)
        if known and len(s) > p.n:
            s = np.concatenate([s[:p.n], drop_dots(s[p.n:])])
        outs.append(p.frame.to_input(s))
    after = None if classifier is None else classifier.predict(outs)[0]
    results = []
    for i, (p, out) in enumerate(zip(preps, outs)):
        name = None if labels[i] == model.null_class else model.config.class_names[labels[i]]
        conf = (None, None) if after is None or name is None else \
            (_class_prob(classifier, probs[i], name), _class_prob(classifier, after[i], name))
        results.append(RectifyResult(out, p.rough, name, nfe, seconds / len(preps), p.notes + notes[i], *conf))
    return results


def _strengths(strength: float | str, classifier, model: StrokeDenoiser, probs: np.ndarray | None,
               labels: list[int], notes: list[list[str]]) -> np.ndarray:
    """Per-sketch strength. "auto": a drawing the classifier already reads as its class is only touched up, an
    unreadable one is redrawn further (SDEdit's t0 should match how far the input is from clean sketches)."""
    if strength != "auto":
        if not isinstance(strength, (int, float)) or not 0 < strength <= 1:
            raise BadInputError("Strength must be in (0, 1] or 'auto'.")
        return np.full(len(labels), float(strength))
    lo, hi, gamma = AUTO_STRENGTH
    if probs is None:
        for n in notes:
            n.append(f"No classifier for the automatic strength: used {(lo + hi) / 2:.2f}.")
        return np.full(len(labels), (lo + hi) / 2)
    out = []
    for i, k in enumerate(labels):
        name = None if k == model.null_class else model.config.class_names[k]
        p = _class_prob(classifier, probs[i], name)
        p = probs[i].max() if p is None else p
        out.append(lo + (hi - lo) * (1 - p) ** gamma)
        notes[i].append(f"Automatic strength {out[-1]:.2f} (the classifier reads the drawing as its class at {p:.0%}).")
    return np.array(out)


def _checked_eta(eta) -> float:
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0 <= eta <= 1:
        raise BadInputError(f"eta must be in [0, 1] or 'strength', got {eta!r}.")
    return float(eta)


def rectify_many(sources: list, model: StrokeDenoiser, classifier: SketchClassifier | None = None,
                 class_names: str | None | list[str | None] = None, strength: float | str = "auto",
                 guidance: float = 1.0, steps: int = RECTIFY_STEPS, seed: int = 0, cfg: float = 4.0,
                 perceptual: str = "lpips", cfg_interval: tuple[int, int] | None = RECTIFY_CFG_INTERVAL,
                 eta: float | str = RECTIFY_ETA, classifier_guidance: float = RECTIFY_CLASSIFIER_GUIDANCE,
                 cancel=None) -> list[RectifyResult]:
    """Rectify several rough sketches in one batch (what the benchmark and a multi-sketch upload need).
    strength in (0, 1] (t0 = strength * T), or "auto" (from the classifier's confidence, see `_strengths`).
    eta: the sampler's stochasticity in [0, 1], or "strength" (each sketch's own strength, see RECTIFY_ETA).
    classifier_guidance: step size of guidance toward the class through `classifier` (guidance.py; 0: off); a
    touch-up gets none of it (its share is 1 - the anchor's), a redraw all."""
    if not sources:
        raise BadInputError("Nothing to rectify.")
    start = time.perf_counter()
    preps, probs, labels, notes, offsets, pen = _start(sources, model, classifier, class_names)
    strengths = _strengths(strength, classifier, model, probs, labels, notes)
    x0 = with_pen(model, offsets, pen)
    perc, target, fit = None, None, None
    if guidance > 0:
        try:
            perc = Perceptual(perceptual, classifier)
        except Exception as exc:  # LPIPS weights missing: fall back to the classifier, and say so
            if classifier is None:
                raise
            perc = Perceptual("classifier", classifier)
            for n_ in notes:
                n_.append(f"LPIPS unavailable ({type(exc).__name__}); guided by classifier features instead.")
        fit = _fit(torch.cumsum(offsets, 1))
        with torch.no_grad():
            target = soft_render(torch.cumsum(offsets, 1) * fit[0] + fit[1], draw_weights(_pen_onehot(pen)), RENDER)
    t0 = torch.from_numpy(np.round(strengths * (model.config.num_train_timesteps - 1)).astype(np.int64))
    etas = torch.from_numpy(strengths).float() if eta == "strength" else _checked_eta(eta)
    w = ANCHOR[0] * np.clip(1 - strengths / ANCHOR[1], 0, 1)
    anchor = torch.from_numpy(w).float() if (w > 0).any() else None
    guide = _classifier_guide(model, classifier, classifier_guidance)
    x, logits, nfe = _denoise(model, x0, torch.tensor(labels), t0, steps, seed, cfg, cfg_interval, guidance, perc,
                              target, fit, eta=etas, anchor=anchor, guide=guide,
                              guide_weight=torch.from_numpy(1 - w).float(), cancel=cancel)
    return _finish(model, classifier, preps, probs, labels, notes, x, logits.argmax(-1).numpy(), nfe,
                   time.perf_counter() - start)


def rectify(source, model: StrokeDenoiser, classifier: SketchClassifier | None = None, class_name: str | None = None,
            strength: float | str = "auto", guidance: float = 1.0, steps: int = RECTIFY_STEPS, seed: int = 0,
            cfg: float = 4.0, perceptual: str = "lpips", eta: float | str = RECTIFY_ETA,
            classifier_guidance: float = RECTIFY_CLASSIFIER_GUIDANCE, cancel=None) -> RectifyResult:
    """Pull a rough sketch (polylines, stroke-3 or raster) toward a clean one of its class. `cancel` (a flag or a
    jobs.Deadline) stops it between denoising steps with JobStopped."""
    return rectify_many([source], model, classifier, [class_name], strength, guidance, steps, seed, cfg,
                        perceptual, eta=eta, classifier_guidance=classifier_guidance, cancel=cancel)[0]


def heal_many(sources: list, model: StrokeDenoiser, classifier: SketchClassifier | None = None,
              class_names: str | None | list[str | None] = None, steps: int = HEAL_STEPS, seed: int = 0,
              cfg: float = 4.0, cfg_interval: tuple[int, int] | None = HEAL_CFG_INTERVAL,
              resample: int = HEAL_RESAMPLE, classifier_guidance: float = HEAL_CLASSIFIER_GUIDANCE,
              cancel=None) -> list[RectifyResult]:
    """Complete incomplete sketches: their points are kept exactly (simplified first when they would fill more
    than HEAL_KNOWN of the model's length), the model draws what is missing after them."""
    if not sources:
        raise BadInputError("Nothing to heal.")
    start = time.perf_counter()
    n_max = model.config.max_len
    preps, probs, labels, notes, offsets, pen = _start(sources, model, classifier, class_names,
                                                       int(HEAL_KNOWN * n_max))
    known = torch.arange(n_max)[None] < torch.tensor([p.n for p in preps])[:, None]
    t0 = torch.full((len(preps),), model.config.num_train_timesteps - 1)
    x, logits, nfe = _denoise(model, with_pen(model, offsets, pen), torch.tensor(labels), t0, steps, seed, cfg,
                              cfg_interval, known=known, resample=resample,
                              guide=_classifier_guide(model, classifier, classifier_guidance), cancel=cancel)
    pen_out = logits.argmax(-1).numpy()
    for i, p in enumerate(preps):
        pen_out[i, :p.n] = p.pen[:p.n]  # the known strokes stay as drawn; new strokes start with a pen-up move
    return _finish(model, classifier, preps, probs, labels, notes, x, pen_out, nfe, time.perf_counter() - start,
                   known=True)


def heal(source, model: StrokeDenoiser, classifier: SketchClassifier | None = None, class_name: str | None = None,
         steps: int = HEAL_STEPS, seed: int = 0, cfg: float = 4.0,
         classifier_guidance: float = HEAL_CLASSIFIER_GUIDANCE, cancel=None) -> RectifyResult:
    """Complete an incomplete sketch: its points are kept exactly, the model draws what is missing after them."""
    return heal_many([source], model, classifier, [class_name], steps, seed, cfg,
                     classifier_guidance=classifier_guidance, cancel=cancel)[0]
