"""Augmenting ONE photo + sketch pair into many training views (what replaces CDST when there is no generative
model to draw new images from).

Geometry (crop, flips; rescaling and small rotations only when asked) is applied to photo and sketch alike, so
lines stay on their edges; photometry (colour, contrast, brightness jitter, blur) only to the photo, so the style
learns that the same lines come from a darker, paler or softer picture of the same thing.

Rescaling and rotating are off by default: a sketch's line width and softness are in pixels of the drawing (an
extractor's and an artist's alike), and both photos are read at the same work size, so a pair rescaled by 1.3
taught lines 1.3 times too thick, and resampling for a rotation softened them. Measured (benchmarks/oneshot.py
protocol, 20 BSDS500 test photos, the three examples x XDoG / HED / PiDiNet, with the prior): LPIPS 0.234 with
scale 0.75-1.3 and rotations of 8 degrees, 0.222 without; better in 8 of the 9 runs, XDoG most (0.204 -> 0.177).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter


@dataclass
class AugmentConfig:
    crop: int = 160  # square view side (px at work size); smaller photos give smaller views
    scale: tuple[float, float] = (1.0, 1.0)  # rescaling the pair changes its line width (see above)
    rotate: float = 0.0  # degrees, either way; resampling softens the lines
    hflip: float = 0.5
    vflip: float = 0.0  # off: most drawings have a sky and a ground
    jitter: float = 0.15  # brightness / contrast / saturation, +- this fraction
    blur: float = 0.2  # probability of a Gaussian blur of radius up to 1 px


def view_side(size: tuple[int, int], cfg: AugmentConfig) -> int:
    """The square view side for a photo of `size` (W, H): the configured crop, at most 90% of its short side,
    a multiple of 16 (the backbone's deepest stride)."""
    return max(32, min(cfg.crop, int(0.9 * min(size))) // 16 * 16)


def photometric(photo: Image.Image, rng: np.random.Generator, cfg: AugmentConfig) -> Image.Image:
    j = cfg.jitter
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        photo = enhance(photo).enhance(float(rng.uniform(1 - j, 1 + j)))
    if rng.random() < cfg.blur:
        photo = photo.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.0))))
    return photo


def augment_pair(photo: Image.Image, sketch: Image.Image, rng: np.random.Generator, cfg: AugmentConfig,
                 side: int | None = None) -> tuple[Image.Image, Image.Image]:
    """One random square view: (RGB photo, L sketch), both side x side."""
    side = side or view_side(photo.size, cfg)
    w, h = photo.size
    lo = max(cfg.scale[0], side / min(w, h))  # never a view larger than the scaled photo
    s = float(rng.uniform(lo, max(lo, cfg.scale[1])))
    size = (max(side, round(w * s)), max(side, round(h * s)))
    p = photo.resize(size, Image.Resampling.BICUBIC)
    k = sketch.resize(size, Image.Resampling.BICUBIC)
    angle = float(rng.uniform(-cfg.rotate, cfg.rotate))
    if angle:
        fill = tuple(int(v) for v in np.asarray(p).reshape(-1, 3).mean(0))
        p = p.rotate(angle, Image.Resampling.BILINEAR, fillcolor=fill)
        k = k.rotate(angle, Image.Resampling.BILINEAR, fillcolor=255)
    x = int(rng.integers(0, size[0] - side + 1))
    y = int(rng.integers(0, size[1] - side + 1))
    p, k = p.crop((x, y, x + side, y + side)), k.crop((x, y, x + side, y + side))
    if rng.random() < cfg.hflip:
        p, k = p.transpose(Image.Transpose.FLIP_LEFT_RIGHT), k.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < cfg.vflip:
        p, k = p.transpose(Image.Transpose.FLIP_TOP_BOTTOM), k.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    return photometric(p, rng, cfg), k
