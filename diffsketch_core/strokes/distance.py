"""How close two drawings are and how smooth one is: what "rectify leaves a clean drawing clean" is measured by.

mean_point_distance: the symmetric chamfer distance between the strokes (each resampled every pixel), in pixels of
a 256-px canvas fitted to the first drawing, so it reads the same for any input size. A drawing against itself is
0; a one-pixel shift is 1.
turning: the total absolute turning of the strokes, in degrees per 100 px of stroke length (256-px frame of the
drawing itself). A smooth convex outline turns 360 degrees in all whatever its number of points; zig-zags add turns.
"""

from __future__ import annotations

import numpy as np

from .format import stroke3_to_polylines
from .raster import fit_transform

FRAME = 256


def _dense(polys: list[np.ndarray], step: float = 1.0) -> np.ndarray:
    """Points every `step` px along every polyline (its vertices included)."""
    out = []
    for p in polys:
        out.append(p[:1])
        for a, b in zip(p[:-1], p[1:]):
            k = max(1, int(np.ceil(np.linalg.norm(b - a) / step)))
            out.append(a + (b - a) * (np.arange(1, k + 1)[:, None] / k))
    return np.concatenate(out)


def _nearest(a: np.ndarray, b: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """For each point of a, the distance to the nearest point of b."""
    return np.concatenate([np.sqrt(((a[i:i + chunk, None] - b[None]) ** 2).sum(-1)).min(1)
                           for i in range(0, len(a), chunk)])


def mean_point_distance(a: np.ndarray, b: np.ndarray, size: int = FRAME) -> float:
    """Symmetric mean nearest-point distance between stroke-3 drawings a and b, in px of a `size` canvas fitted
    to a (b drawn in a's frame)."""
    scale, offset = fit_transform(a, size)
    pa, pb = (_dense([p * scale + offset for p in stroke3_to_polylines(s)]) for s in (a, b))
    if len(pb) > 20_000:  # an absurd drawing: subsample rather than run out of memory
        pb = pb[np.linspace(0, len(pb) - 1, 20_000).astype(int)]
    return float((_nearest(pa, pb).mean() + _nearest(pb, pa).mean()) / 2)


def turning(s: np.ndarray, size: int = FRAME, min_segment: float = 0.5) -> float:
    """Total absolute turning of the strokes in degrees per 100 px of their length (segments shorter than
    `min_segment` px are merged into the next, so duplicate points do not count)."""
    scale, offset = fit_transform(s, size)
    total, length = 0.0, 0.0
    for p in stroke3_to_polylines(s):
        d = np.diff(p * scale + offset, axis=0)
        n = np.linalg.norm(d, axis=1)
        d = d[n >= min_segment]
        length += float(n.sum())
        if len(d) > 1:
            a = np.arctan2(d[:, 1], d[:, 0])
            total += float(np.abs(np.angle(np.exp(1j * np.diff(a)))).sum())
    return float(np.degrees(total) * 100 / max(length, 1e-9))
