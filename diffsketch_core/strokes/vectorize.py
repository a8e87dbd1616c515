"""Raster drawing -> ordered strokes: threshold the ink, thin it to a one-pixel skeleton, trace the skeleton
into polylines (8-connected walks that split at junctions), order them greedily (each stroke starts near where
the last one ended, the first at the top-left), simplify with RDP, and return stroke-3. A drawing that would trace to more paths than the budget (noise, a photo)
is refused before tracing, with a sentence (`budgets.MAX_TRACED_PATHS`, `budgets.MAX_SKELETON_PIXELS`)."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import convolve
from skimage.morphology import skeletonize

from ..budgets import MAX_SKELETON_PIXELS, MAX_TRACED_PATHS
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


def _count_paths(skel: np.ndarray) -> int:
    """How many paths `_trace` would return, from the skeleton's pixel degrees (one convolution, no tracing):
    each path starts at an end or junction, one per incident edge counted from both ends, plus isolated pixels.
    Closed loops without any junction are not counted; they cannot be numerous in a budget-sized skeleton."""
    s = skel.astype(np.uint8)
    degree = convolve(s, np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], np.uint8), mode="constant") * s
    nodes = skel & (degree != 2)
    return int((degree[nodes].sum() + 1) // 2 + (skel & (degree == 0)).sum())


def _check_budget(skel: np.ndarray) -> None:
    pixels = int(skel.sum())
    if pixels > MAX_SKELETON_PIXELS:
        raise BadInputError(f"The drawing has too much ink to trace ({pixels:,} pixels of line, more than "
                            f"{MAX_SKELETON_PIXELS:,}): upload a line drawing on plain paper, not a photo or a filled image.")
    paths = _count_paths(skel)
    if paths > MAX_TRACED_PATHS:
        raise BadInputError(f"The drawing breaks into about {paths:,} separate lines (more than {MAX_TRACED_PATHS:,}): "
                            "it looks like noise or a photo. Upload a line drawing on plain paper, or draw on the canvas.")


def _order(paths: list[np.ndarray]) -> list[np.ndarray]:
    """Greedy order: each path starts near where the last one ended (reversed when its far end is nearer)."""
    remaining = sorted(paths, key=lambda p: (p[:, 1].min() + p[:, 0].min()))
    heads = np.array([p[0] for p in remaining])
    tails = np.array([p[-1] for p in remaining])
    free = np.ones(len(remaining), bool)
    free[0] = False
    ordered = [remaining[0]]
    for _ in range(len(remaining) - 1):
        end = ordered[-1][-1]
        d_head = np.where(free, np.hypot(*(heads - end).T), np.inf)
        d_tail = np.where(free, np.hypot(*(tails - end).T), np.inf)
        i = int(np.argmin(np.minimum(d_head, d_tail)))
        free[i] = False
        ordered.append(remaining[i][::-1] if d_tail[i] < d_head[i] else remaining[i])
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
    skel = skeletonize(mask)
    _check_budget(skel)
    paths = [p for p in _trace(skel) if len(p) > 1 and np.abs(np.diff(p, axis=0)).sum() >= min_length]
    if not paths:
        raise BadInputError("The drawing is too small to trace: only specks of ink were found.")
    return polylines_to_stroke3([rdp(p, epsilon) for p in _order(paths)])
