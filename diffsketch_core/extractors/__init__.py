"""Classic photo -> sketch extractors behind one call.

    extract_sketch(image, "fast" | "hed" | "pidinet" | "xdog" | "canny") -> Sketch(image, notes)

"fast" is the shipped student distilled from HED (extractors/student.py, checkpoints/student_hed/).

Any image the `images` module accepts goes in (path, bytes, PIL, array; gray, RGBA, 16-bit, huge); out comes an
8-bit grey sketch of the same size as the (possibly downscaled, see notes) input: dark lines on white.
Photos larger than `resolution` on their long side are processed at that size and the result is scaled back,
which keeps the neural extractors at a few seconds on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PIL import Image

from ..errors import BadInputError
from ..images import ImageLike, ink_to_sketch, load_image
from . import canny, hed, pidinet, student, xdog

EXTRACTORS: dict[str, Callable[[Image.Image], np.ndarray]] = {
    "fast": student.edges,
    "hed": hed.edges,
    "pidinet": pidinet.edges,
    "xdog": xdog.edges,
    "canny": canny.edges,
}
METHODS = tuple(EXTRACTORS)
DEFAULT_RESOLUTION = 768
MIN_RESOLUTION = 64  # below this every extractor returns mush, so a smaller value is a mistake, not a wish
# what each extractor needs before it can run; XDoG and Canny need nothing
_NEEDS: dict[str, Callable[[], str | None]] = {"hed": hed.needs, "pidinet": pidinet.needs, "fast": student.needs}


@dataclass
class Sketch:
    image: Image.Image  # mode "L", 255 = paper
    notes: list[str] = field(default_factory=list)


def needs(method: str) -> str | None:
    """None when `method` can run on this machine now, without a download; otherwise the sentence that says
    what it needs (and which setting provides it)."""
    check = _NEEDS.get(method)
    return check() if check is not None else None


def ready_methods() -> list[str]:
    return [m for m in METHODS if needs(m) is None]


def extract_sketch(image: ImageLike, method: str = "hed", resolution: int | None = DEFAULT_RESOLUTION) -> Sketch:
    fn = EXTRACTORS.get(str(method).lower())
    if fn is None:
        raise BadInputError(f"Unknown extractor {method!r}; choose one of: {', '.join(METHODS)}.")
    if resolution and resolution < MIN_RESOLUTION:
        raise BadInputError(f"The resolution must be 0 (the photo's own size) or at least {MIN_RESOLUTION} px, "
                            f"not {resolution}.")
    loaded = load_image(image)
    img, notes = loaded.image, list(loaded.notes)
    w, h = img.size
    work = img
    if resolution and max(w, h) > resolution:
        s = resolution / max(w, h)
        work = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)
        notes.append(f"Processed at {work.size[0]}x{work.size[1]} and scaled back to {w}x{h}.")
    ink = fn(work)
    if ink.shape != (work.size[1], work.size[0]):
        raise RuntimeError(f"{method} returned {ink.shape}, expected {(work.size[1], work.size[0])}")
    sketch = ink_to_sketch(ink)
    if sketch.size != (w, h):
        sketch = sketch.resize((w, h), Image.Resampling.BILINEAR)
    return Sketch(sketch, notes)
