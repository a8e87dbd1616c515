"""Turn whatever a user hands us into a well-behaved RGB image, or say clearly why not.

Conversions (documented, never silent in the UI: `load_image` returns notes the caller can show):
grayscale and palette images become RGB; transparency is composited onto white (a transparent
background is paper, not ink); 16-bit and float images are rescaled to 8 bits; images with a side over
`MAX_SIDE` are downscaled (aspect kept). Images smaller than `MIN_SIDE` on a side are refused, and so are images
over the pixel budget (`budgets.MAX_PIXELS`), from the file's header, before a pixel is decoded.
Messages never quote the file's path or the decoder's own text (which does): they reach users of the app.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .budgets import MAX_PIXELS
from .errors import BadInputError

MAX_SIDE = 4096
MIN_SIDE = 8
# Pillow only warns at MAX_IMAGE_PIXELS and raises at twice that, so the budget is checked here from the header
# (`check_pixels`); Pillow's own limit stays as a second line for any other code that opens images.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
TOO_MANY_PIXELS = "The image is {w}x{h} pixels ({mp:.0f} MP), more than the {limit:.0f} MP this app decodes; downscale it first."

ImageLike = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]


@dataclass
class LoadedImage:
    image: Image.Image  # RGB, 8 bits
    notes: list[str] = field(default_factory=list)


def check_pixels(width: int, height: int) -> None:
    """Refuse an image over the pixel budget (call it with the header's size, before decoding)."""
    if width * height > MAX_PIXELS:
        raise BadInputError(TOO_MANY_PIXELS.format(w=width, h=height, mp=width * height / 1e6, limit=MAX_PIXELS / 1e6))


def _open(source: ImageLike, max_side: int = MAX_SIDE) -> Image.Image:
    if isinstance(source, Image.Image):
        check_pixels(*source.size)
        return source
    if isinstance(source, np.ndarray):
        if source.ndim >= 2:
            check_pixels(source.shape[1], source.shape[0])
        return _from_array(source)
    try:
        with warnings.catch_warnings():  # the 1x..2x band warns; check_pixels refuses it below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if isinstance(source, bytes):
                img = Image.open(io.BytesIO(source))
            else:
                path = Path(source)
                if not path.is_file():
                    raise BadInputError("No such image file.")
                img = Image.open(path)
        check_pixels(*img.size)  # header only: nothing decoded yet
        if img.format == "JPEG" and max(img.size) > 2 * max_side:
            img.draft("RGB", (max_side, max_side))  # decode at 1/2..1/8 scale: a big photo is downscaled anyway
        img.load()
        return img
    except Image.DecompressionBombError:
        raise BadInputError(f"The image has more than the {MAX_PIXELS / 1e6:.0f} MP this app decodes; downscale it "
                            "first.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        if isinstance(exc, BadInputError):
            raise
        raise BadInputError(f"Could not read the file as an image ({type(exc).__name__}). "
                            "Use a PNG, JPEG or WebP file.") from None


def _from_array(arr: np.ndarray) -> Image.Image:
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise BadInputError(f"An image array must be HxW, HxWx1, HxWx3 or HxWx4, got shape {arr.shape}.")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        arr = _to_uint8(arr.astype(np.float64), float_range=np.issubdtype(arr.dtype, np.floating))
    mode = "L" if arr.ndim == 2 else ("RGB" if arr.shape[2] == 3 else "RGBA")
    return Image.fromarray(np.ascontiguousarray(arr), mode)


def _to_uint8(arr: np.ndarray, float_range: bool) -> np.ndarray:
    if not np.all(np.isfinite(arr)):
        raise BadInputError("The image contains NaN or infinite values.")
    if float_range and arr.min() >= 0.0 and arr.max() <= 1.0:
        return np.round(arr * 255).astype(np.uint8)
    hi = 65535.0 if arr.max() > 255 else 255.0
    return np.clip(np.round(arr * 255.0 / hi), 0, 255).astype(np.uint8)


def _to_rgb(img: Image.Image, notes: list[str]) -> Image.Image:
    img = ImageOps.exif_transpose(img) if hasattr(img, "getexif") else img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img).astype(np.float64)
        img = Image.fromarray(_to_uint8(arr, float_range=img.mode == "F"), "L")
        notes.append("16-bit/float image converted to 8 bits.")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("LA", "RGBA", "PA"):
        rgba = img.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            notes.append("Transparent areas were composited onto white.")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    if img.mode != "RGB":
        if img.mode == "L":
            notes.append("Grayscale image converted to RGB.")
        img = img.convert("RGB")
    return img


def load_image(source: ImageLike, max_side: int = MAX_SIDE, min_side: int = MIN_SIDE) -> LoadedImage:
    """Open `source` (path, bytes, PIL image or array) as an 8-bit RGB image, with notes on what was converted."""
    if source is None:
        raise BadInputError("No image was given.")
    notes: list[str] = []
    img = _to_rgb(_open(source, max_side), notes)
    w, h = img.size
    if min(w, h) < min_side:
        raise BadInputError(f"The image is {w}x{h} pixels; at least {min_side}x{min_side} is needed.")
    if max(w, h) > max_side:
        scale = max_side / max(w, h)
        size = (max(min_side, round(w * scale)), max(min_side, round(h * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)  # box-reduce first when 4x or more: faster, same look
        notes.append(f"Large image ({w}x{h}) downscaled to {size[0]}x{size[1]}.")
    return LoadedImage(img, notes)


def to_gray_array(img: Image.Image) -> np.ndarray:
    """HxW uint8 luminance."""
    return np.asarray(img.convert("L"))


def ink_to_sketch(ink: np.ndarray) -> Image.Image:
    """Edge strength in [0, 1] (1 = line) -> a sketch image: dark lines on white paper, mode L."""
    ink = np.clip(np.nan_to_num(ink, nan=0.0), 0.0, 1.0)
    return Image.fromarray(np.round(255.0 * (1.0 - ink)).astype(np.uint8), "L")
