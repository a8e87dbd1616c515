"""Write sketches the way artists use them: a PNG and an animated SVG per sketch, all of them as one stroke-3
.npz (sketch-rnn layout), and a zip with everything."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .format import save_npz
from .raster import fit_transform, render
from .svg import to_svg


@dataclass
class Exported:
    pngs: list[str]
    svgs: list[str]
    npz: str
    zip: str


def export(sketches: list[np.ndarray], folder: str | Path, stem: str = "sketch", size: int = 256,
           line_width: float = 2.5, same_frame: bool = False) -> Exported:
    """same_frame: draw every sketch in one joint frame (before/after pairs line up); otherwise each is fitted."""
    folder = Path(folder)
    joint = fit_transform(list(sketches), size) if same_frame else None
    folder.mkdir(parents=True, exist_ok=True)
    pngs, svgs = [], []
    for i, s in enumerate(sketches):
        png, svg = folder / f"{stem}-{i + 1}.png", folder / f"{stem}-{i + 1}.svg"
        Image.fromarray(render(s, size, line_width, transform=joint)).save(png)
        svg.write_text(to_svg(s, size, line_width, animated=True, transform=joint), encoding="utf-8")
        pngs.append(str(png))
        svgs.append(str(svg))
    npz = folder / f"{stem}s.npz"
    save_npz(npz, sketches, split="test")
    zipped = folder / f"{stem}s.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        for path in pngs + svgs + [str(npz)]:
            zf.write(path, Path(path).name)
    return Exported(pngs, svgs, str(npz), str(zipped))
