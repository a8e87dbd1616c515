"""Turning a user's sketch image into a training target: ink on white paper, one channel in [0, 1]."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..errors import BadInputError
from ..images import ImageLike, load_image

BLANK_STD = 1.5  # grey levels: below this the "sketch" is a flat sheet


def load_sketch(source: ImageLike, size: tuple[int, int] | None = None) -> tuple[np.ndarray, list[str]]:
    """(H, W) float32 in [0, 1], 1 = paper. Colour and transparency become ink on white (via `load_image`);
    a light-on-dark drawing is inverted; a blank or all-black sheet is refused. `size` = (W, H) to resize to."""
    loaded = load_image(source)
    notes = list(loaded.notes)
    grey = np.asarray(loaded.image.convert("L"), dtype=np.float32)
    if grey.std() < BLANK_STD:
        what = "all black" if grey.mean() < 128 else "blank"
        raise BadInputError(f"The sketch is {what}: draw some lines (dark on white) before training.")
    if np.median(grey) < 128:  # most of the sheet is dark: white lines on black
        grey = 255.0 - grey
        notes.append("The sketch looked like light lines on a dark background and was inverted.")
    img = Image.fromarray(grey.astype(np.uint8), "L")
    if size is not None and img.size != size:
        notes.append(f"Sketch resized from {img.size[0]}x{img.size[1]} to {size[0]}x{size[1]} to match the photo.")
        img = img.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.float32) / 255.0, notes
