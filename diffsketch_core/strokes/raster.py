"""Render stroke-3 sketches to pixels with OpenCV (anti-aliased), fitted to a square canvas."""

from __future__ import annotations

import cv2
import numpy as np

from .format import stroke3_to_polylines

_SHIFT = 4  # sub-pixel bits for cv2.polylines


def fit_transform(s: np.ndarray | list[np.ndarray], size: int, margin: float = 0.08) -> tuple[float, np.ndarray]:
    """Scale and offset that fit the sketch's bounding box (or several sketches' joint box, to draw them in one
    frame) into a size x size canvas, aspect kept."""
    sketches = s if isinstance(s, list) else [s]
    pts = np.concatenate([np.cumsum(np.asarray(k, np.float64)[:, :2], axis=0) for k in sketches])
    lo, hi = pts.min(0), pts.max(0)
    extent = max(float((hi - lo).max()), 1e-6)
    scale = size * (1 - 2 * margin) / extent
    offset = size / 2 - scale * (lo + hi) / 2
    return scale, offset


def render(s: np.ndarray, size: int = 256, line_width: float = 2.0, margin: float = 0.08,
           transform: tuple[float, np.ndarray] | None = None) -> np.ndarray:
    """Dark strokes on white paper, (size, size) uint8. `transform` = (scale, offset) overrides fitting, e.g. to
    draw in canvas coordinates."""
    scale, offset = transform if transform is not None else fit_transform(s, size, margin)
    img = np.full((size, size), 255, np.uint8)
    thickness = max(1, int(round(line_width)))
    for poly in stroke3_to_polylines(s):
        p = np.round((poly * scale + offset) * (1 << _SHIFT)).astype(np.int32)
        if len(p) == 1:
            p = np.concatenate([p, p])
        cv2.polylines(img, [p.reshape(-1, 1, 2)], False, 0, thickness, cv2.LINE_AA, _SHIFT)
    return img


def render_ink(sketches: list[np.ndarray], size: int = 64, line_width: float = 1.5) -> np.ndarray:
    """(B, size, size) float32 ink in [0, 1] (1 = line): the classifier's input."""
    return np.stack([1.0 - render(s, size, line_width) / 255.0 for s in sketches]).astype(np.float32)
