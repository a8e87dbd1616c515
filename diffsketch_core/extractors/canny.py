"""Canny edges with thresholds set from the image's own median (so one setting fits dark and bright photos)."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image


def edges(img: Image.Image, sigma: float = 0.33, blur: float = 1.0) -> np.ndarray:
    grey = np.asarray(img.convert("L"))
    if blur > 0:
        grey = cv2.GaussianBlur(grey, (0, 0), blur)
    med = float(np.median(grey))
    low, high = int(max(0, (1 - sigma) * med)), int(min(255, (1 + sigma) * med))
    low, high = max(low, 10), max(high, 30)  # a flat image must not turn its noise into lines
    return (cv2.Canny(grey, low, high, L2gradient=True) > 0).astype(np.float32)
