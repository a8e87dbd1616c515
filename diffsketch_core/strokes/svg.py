"""SVG export: one <path> per stroke, optionally animated so the strokes draw themselves in order."""

from __future__ import annotations

import numpy as np

from .format import stroke3_to_polylines
from .raster import fit_transform


def _path_d(poly: np.ndarray) -> str:
    if len(poly) == 1:
        poly = np.concatenate([poly, poly])
    head = f"M{poly[0, 0]:.1f} {poly[0, 1]:.1f}"
    return head + "".join(f" L{x:.1f} {y:.1f}" for x, y in poly[1:])


def to_svg(s: np.ndarray, size: int = 256, stroke_width: float = 2.0, animated: bool = False,
           seconds_per_stroke: float = 0.4, color: str = "#111",
           transform: tuple[float, np.ndarray] | None = None) -> str:
    scale, offset = transform if transform is not None else fit_transform(s, size)
    polys = [p * scale + offset for p in stroke3_to_polylines(s)]
    style = ""
    if animated:
        total = seconds_per_stroke * len(polys)
        style = ("<style>path{stroke-dasharray:1;stroke-dashoffset:1;"
                 f"animation:draw {seconds_per_stroke:.2f}s linear forwards}}"
                 "@keyframes draw{to{stroke-dashoffset:0}}</style>")
        paths = [f'<path pathLength="1" style="animation-delay:{i * seconds_per_stroke:.2f}s" d="{_path_d(p)}"/>'
                 for i, p in enumerate(polys)]
        style += f"<!-- {len(polys)} strokes, {total:.1f} s -->"
    else:
        paths = [f'<path d="{_path_d(p)}"/>' for p in polys]
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" viewBox="0 0 {size} {size}">'
            f'<rect width="100%" height="100%" fill="white"/>{style}'
            f'<g fill="none" stroke="{color}" stroke-width="{stroke_width}" stroke-linecap="round" '
            f'stroke-linejoin="round">{"".join(paths)}</g></svg>')
