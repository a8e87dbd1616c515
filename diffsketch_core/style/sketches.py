"""Turning a user's sketch image into a training target: ink on white paper, one channel in [0, 1].

Polarity (which of dark and light is the paper) is a guess from what is paper, shown to the user, who can
overrule it (`invert="yes"/"no"`; the app's flip control and the training CLI's --invert):
1. the sheet's border: paper usually reaches the edges. The border is read as rings at several depths and the
   brightest ring counts, so a dark frame drawn round the drawing does not pass for dark paper;
2. if the border is dark, the light pixels decide: thin light strokes that vanish under a small erosion are ink
   (white-on-black line art, chalk on a blackboard), while light areas that survive it are paper showing through a
   dark tonal sketch (XDoG of a dark photo, charcoal, dense hatching), which keeps its polarity.
The old rule (invert when the median grey is below 128) inverted every dark tonal sketch; it is gone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from ..errors import BadInputError
from ..images import ImageLike, load_image

BLANK_STD = 1.5  # grey levels: below this the "sketch" is a flat sheet
DARK = 128  # grey level between ink and paper for the polarity guess
RINGS = (0.0, 0.02, 0.05, 0.10)  # border rings as fractions of the short side: [0-2%), [2-5%), [5-10%)
SURVIVE = 0.35  # share of light pixels left after erosion above which the light areas are paper, not strokes
INVERT_CHOICES = ("auto", "yes", "no")


@dataclass
class Polarity:
    invert: bool
    reason: str  # one sentence for the user: what the guess is based on

    @property
    def describe(self) -> str:
        what = "light lines on dark paper: it will be inverted" if self.invert else "dark lines on light paper"
        return f"The sketch looks like {what} ({self.reason})."


def _border_brightness(grey: np.ndarray) -> float:
    """The brightest of the border rings' medians (grey levels)."""
    h, w = grey.shape
    side = min(h, w)
    best = 0.0
    for a, b in zip(RINGS[:-1], RINGS[1:]):
        i, j = int(a * side), max(int(b * side), int(a * side) + 1)
        outer = np.ones_like(grey, dtype=bool)
        outer[j:h - j, j:w - j] = False
        inner = np.zeros_like(grey, dtype=bool)
        inner[i:h - i, i:w - i] = True
        ring = grey[outer & inner]
        if ring.size:
            best = max(best, float(np.median(ring)))
    return best


def _light_survives_erosion(grey: np.ndarray) -> float:
    """Share of light pixels still light after an erosion a few pixels wide (0 = all thin strokes)."""
    light = grey >= DARK
    if not light.any():
        return 0.0
    size = 2 * max(2, round(min(grey.shape) / 100)) + 1  # 5 px at 256 px, 11 px at 1024 px
    mask = Image.fromarray((light * 255).astype(np.uint8), "L").filter(ImageFilter.MinFilter(size))
    return float((np.asarray(mask) > 0).sum() / light.sum())


def guess_polarity(grey: np.ndarray) -> Polarity:
    """grey: (H, W) grey levels 0-255."""
    border = _border_brightness(grey)
    if border >= DARK:
        return Polarity(False, f"its border is light, grey {border:.0f} of 255")
    survive = _light_survives_erosion(grey)
    if survive >= SURVIVE:
        return Polarity(False, f"its border is dark but its light areas are solid ({survive:.0%} survive an "
                               "erosion), so they are taken for paper in a dark tonal sketch")
    return Polarity(True, f"its border is dark, grey {border:.0f} of 255, and its light parts are thin strokes")


def parse_invert(value: str | bool | None) -> bool | None:
    """"auto"/None -> None (guess), "yes"/True -> True, "no"/False -> False."""
    if value is None or isinstance(value, bool):
        return value
    v = str(value).strip().lower()
    if v not in INVERT_CHOICES:
        raise BadInputError(f"Sketch inversion must be one of {', '.join(INVERT_CHOICES)}, got {value!r}.")
    return None if v == "auto" else v == "yes"


def sketch_grey(source: ImageLike) -> tuple[np.ndarray, list[str]]:
    loaded = load_image(source)
    grey = np.asarray(loaded.image.convert("L"), dtype=np.float32)
    if grey.std() < BLANK_STD:
        what = "all black" if grey.mean() < DARK else "blank"
        raise BadInputError(f"The sketch is {what}: draw some lines (dark on white) first.")
    return grey, list(loaded.notes)


def load_sketch(source: ImageLike, size: tuple[int, int] | None = None,
                invert: str | bool | None = "auto") -> tuple[np.ndarray, list[str]]:
    """(H, W) float32 in [0, 1], 1 = paper. Colour and transparency become ink on white (via `load_image`);
    polarity is guessed (see the module docstring) unless `invert` says yes/no; a blank or all-black sheet is
    refused. `size` = (W, H) to resize to."""
    target, notes, _inverted = prepare_sketch(source, size, invert)
    return target, notes


def prepare_sketch(source: ImageLike, size: tuple[int, int] | None = None,
                   invert: str | bool | None = "auto") -> tuple[np.ndarray, list[str], bool]:
    """`load_sketch`, also saying whether the sketch was inverted."""
    grey, notes = sketch_grey(source)
    choice = parse_invert(invert)
    if choice is None:
        guess = guess_polarity(grey)
        choice = guess.invert
        if guess.invert:
            notes.append(guess.describe + " Choose 'no' for sketch inversion if that is wrong.")
    elif choice:
        notes.append("The sketch was inverted, as asked.")
    if choice:
        grey = 255.0 - grey
    img = Image.fromarray(grey.astype(np.uint8), "L")
    if size is not None and img.size != size:
        notes.append(f"Sketch resized from {img.size[0]}x{img.size[1]} to {size[0]}x{size[1]} to match the photo.")
        img = img.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.float32) / 255.0, notes, bool(choice)
