"""Classifier guidance toward recognisability (DiffSketching's classifier guidance, applied to strokes).

At the denoising steps inside `interval`, the predicted clean sketch x0_hat is rendered softly (`splat_render`,
differentiable in the points), the project's classifier reads the render, and the points move a normalised step
along the gradient of log p(class | render). The sampler then continues from the moved x0_hat (its eps recomputed
to match), so guidance costs no extra network evaluation, only a render and a classifier pass and their gradient.

A sketch without a class (unconditional, "any") is pulled toward whatever class the classifier already reads in
it most strongly, which makes the sketch more decisively *something*.

A gain measured with the classifier that guided is not evidence by itself: the guidance may have found what fools
that classifier. The benchmarks judge with a second classifier the guidance never saw as well
(checkpoints/sketch_classifier_eval).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import BadInputError
from .classifier import SketchClassifier
from .model import StrokeDenoiser
from .soft_raster import draw_weights, splat_render

FIT_MARGIN = 0.08  # the classifier's own render margin (raster.fit_transform)


def fit_to_canvas(points: torch.Tensor, size: int, margin: float = FIT_MARGIN) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sketch (scale (B, 1, 1), shift (B, 1, 2)), without gradient, that fits absolute points (B, N, 2) into a
    size x size canvas as the classifier's renders are fitted."""
    points = points.detach()
    lo, hi = points.amin(dim=1, keepdim=True), points.amax(dim=1, keepdim=True)
    extent = (hi - lo).amax(-1, keepdim=True).clamp_min(1e-6)
    scale = size * (1 - 2 * margin) / extent
    return scale, size / 2 - scale * (lo + hi) / 2


# Tuned on 200 sketches (10 per class, skip sampler, batch 64, 2 threads; benchmarks as runs of generate):
# recognised by the project's classifier / the independent one, Frechet at n = 200 (real sketches at n = 200:
# 3.8), median turning in degrees per 100 px (real: 123), s/sketch:
#   unguided                                  0.475 / 0.485  14.2  172  0.011
#   rate 0.1 x 3 steps at t <= 600            0.970 / 0.845  10.4  215  0.023  (jagged: points move one by one)
#   ... with the gradient smoothed (4 passes)  0.920 / 0.780   8.6  173
#   rate 0.15 x 5, smoothed 4 (the default)   0.980 / 0.885   7.6  174  0.026
#   rate 0.3 x 1: 0.455 / 0.490, 24.9 (large steps break the drawing); guided at t = 499 only (5 steps): 0.555 /
#   0.510, so the skip sampler's last step (t = 249) must be guided: the unguided step after a guided one redraws
RATE, STEPS, INTERVAL, SMOOTH = 0.15, 5, (0, 600), 4


def checked_rate(rate) -> float:
    """A guidance step size from a caller: a number in [0, 1] (0: off), or BadInputError."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise BadInputError(f"Classifier guidance must be a number in [0, 1], got {rate!r}.")
    return float(rate)


def _smooth(g: torch.Tensor, passes: int) -> torch.Tensor:
    """The gradient (B, N, 2) averaged along the sequence with a [1, 2, 1] / 4 kernel, `passes` times: neighbouring
    points move together, so a smooth stroke stays smooth."""
    for _ in range(passes):
        padded = torch.cat([g[:, :1], g, g[:, -1:]], 1)
        g = 0.25 * padded[:, :-2] + 0.5 * padded[:, 1:-1] + 0.25 * padded[:, 2:]
    return g


@dataclass
class ClassifierGuidance:
    """rate: the size of one step (RMS over the sketch's points, in the model's normalised offset units) for each of
    `steps` gradient steps per denoising step, at timesteps lo <= t <= hi of `interval`. class_map[k]: the
    classifier's index of the model's class k, or -1 (the model's null class: the class read most strongly)."""

    classifier: SketchClassifier
    class_map: torch.Tensor
    rate: float = RATE
    steps: int = STEPS
    interval: tuple[int, int] = INTERVAL
    smooth: int = SMOOTH

    @classmethod
    def for_model(cls, model: StrokeDenoiser, classifier: SketchClassifier, rate: float = RATE,
                  **kwargs) -> "ClassifierGuidance | None":
        """Guidance for `model`'s labels, or None when rate is 0 or the classifier does not know all its classes."""
        known = list(classifier.config.class_names)
        names = list(model.config.class_names)
        if rate <= 0 or not set(names) <= set(known):
            return None
        return cls(classifier.eval(), torch.tensor([known.index(n) for n in names] + [-1]), rate, **kwargs)

    def active(self, t: int | torch.Tensor) -> bool | torch.Tensor:
        """Whether timestep t (or each of a tensor of them) is inside the guided interval."""
        return (self.interval[0] <= t) & (t <= self.interval[1])

    def log_prob(self, points: torch.Tensor, pen_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """log p(target | soft render) per sketch (B,); a target of -1 means the class read most strongly."""
        size = self.classifier.config.image_size
        scale, shift = fit_to_canvas(points, size)
        ink = splat_render(points * scale + shift, draw_weights(pen_probs), size)
        logp = F.log_softmax(self.classifier(ink.unsqueeze(1)), -1)
        targets = torch.where(targets < 0, logp.detach().argmax(-1), targets)
        return logp.gather(1, targets[:, None]).squeeze(1)

    @torch.enable_grad()
    def __call__(self, x0: torch.Tensor, pen_logits: torch.Tensor, labels: torch.Tensor,
                 weight: torch.Tensor | None = None) -> torch.Tensor:
        """x0_hat (B, N, C) moved toward recognisability; only its (dx, dy) change; `weight` (B,) scales each
        sketch's steps. Steps are taken on absolute points, which moves each point locally (a step on offsets would
        drag every later point along)."""
        rate = self.rate if weight is None else self.rate * weight.reshape(-1, 1, 1)
        targets = self.class_map.to(labels.device)[labels]
        pen_probs = pen_logits.detach().softmax(-1)
        pts = torch.cumsum(x0[..., :2].detach(), 1)
        for _ in range(self.steps):
            pts.requires_grad_(True)
            (g,) = torch.autograd.grad(self.log_prob(pts, pen_probs, targets).sum(), pts)
            g = _smooth(g, self.smooth)
            rms = g.pow(2).mean(dim=(1, 2), keepdim=True).sqrt()
            pts = (pts + rate * g / (rms + 1e-12)).detach()
        offsets = torch.diff(pts, dim=1, prepend=torch.zeros_like(pts[:, :1]))
        return torch.cat([offsets, x0[..., 2:]], -1)
