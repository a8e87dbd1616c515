"""Raster drawing -> ordered strokes: threshold the ink, thin it to a one-pixel skeleton, trace the skeleton
into polylines (8-connected walks that split at junctions), order them greedily (each stroke starts near where
the last one ended, the first at the top-left), simplify with RDP, and return stroke-3."""

from __future__ import annotations

import numpy as np
from skimage.morphology import skeletonize

from ..errors import BadInputError
from ..images import ImageLike, load_image
from .format import polylines_to_stroke3, rdp

_NEIGHBOURS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def ink_mask(image: ImageLike, threshold: int = 128) -> np.ndarray:
    grey = np.asarray(load_image(image, min_side=2).image.convert("L"))
    if np.median(grey) < 128:  # light lines on dark paper
        grey = 255 - grey
    return grey < threshold


def _trace(skel: np.ndarray) -> list[np.ndarray]:
    pts = set(zip(*np.nonzero(skel)))

    def nbrs(p):
        return [(p[0] + dy, p[1] + dx) for dy, dx in _NEIGHBOURS if (p[0] + dy, p[1] + dx) in pts]

    degree = {p: len(nbrs(p)) for p in pts}
    visited_edges: set = set()
    paths = []
    # start at ends (degree 1) and junctions first so paths break there; loops are picked up afterwards
    starts = sorted(pts, key=lambda p: (degree[p] == 2, p))
    for s in starts:
        for n in nbrs(s):
            if frozenset((s, n)) in visited_edges:
                continue
            path, prev, cur = [s], s, n
            visited_edges.add(frozenset((s, n)))
            while True:
                path.append(cur)
                if degree[cur] != 2:
                    break
                nxt = [q for q in nbrs(cur) if q != prev and frozenset((cur, q)) not in visited_edges]
                if not nxt:
                    break
                visited_edges.add(frozenset((cur, nxt[0])))
                prev, cur = cur, nxt[0]
            paths.append(np.array([(x, y) for y, x in path], dtype=np.float64))
    for p in pts:  # isolated pixels
        if degree[p] == 0:
            paths.append(np.array([(p[1], p[0])], dtype=np.float64))
    return paths


def _order(paths: list[np.ndarray]) -> list[np.ndarray]:
    remaining = sorted(paths, key=lambda p: (p[:, 1].min() + p[:, 0].min()))
    ordered = [remaining.pop(0)]
    while remaining:
        end = ordered[-1][-1]
        costs = [min(np.hypot(*(p[0] - end)), np.hypot(*(p[-1] - end))) for p in remaining]
        p = remaining.pop(int(np.argmin(costs)))
        if np.hypot(*(p[-1] - end)) < np.hypot(*(p[0] - end)):
            p = p[::-1]
        ordered.append(p)
    return ordered


def vectorize(image: ImageLike, epsilon: float = 1.5, min_length: float = 3.0, max_side: int = 512) -> np.ndarray:
    """Stroke-3 of a raster drawing, in the image's pixel units (downscaled to `max_side` first)."""
    mask = ink_mask(image)
    if max(mask.shape) > max_side:
        from PIL import Image
        s = max_side / max(mask.shape)
        img = Image.fromarray(mask.astype(np.uint8) * 255).resize((round(mask.shape[1] * s), round(mask.shape[0] * s)))
        mask = np.asarray(img) > 127
    if not mask.any():
        raise BadInputError("The drawing has no ink: draw some dark lines on a light background.")
    paths = [p for p in _trace(skeletonize(mask)) if len(p) > 1 and np.abs(np.diff(p, axis=0)).sum() >= min_length]
    if not paths:
        raise BadInputError("The drawing is too small to trace: only specks of ink were found.")
    return polylines_to_stroke3([rdp(p, epsilon) for p in _order(paths)])
