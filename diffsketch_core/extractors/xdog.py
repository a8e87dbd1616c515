"""XDoG with DiffSketch's parameters (the "garygrossi" variant its `models/xdog.py` uses).

D = G_sigma(I) - gamma * G_{k sigma}(I) on 0..255 grey = mean(RGB), scaled by 1/255; pixels with D >= eps are
paper, the rest fall off as 1 + tanh(phi (D - eps)). With k = 200 the second blur is a wide local mean, so the
result is a tonal sketch (lines plus shading): flat areas, white paper included, come out mid-grey
(about 35-55% grey) exactly as in DiffSketch's XDoG ground truth; only pixels clearly brighter than their
surroundings turn white.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

SIGMA, K, GAMMA, EPS, PHI = 0.5, 200.0, 0.98, 0.1, 10.0


def edges(img: Image.Image, sigma: float = SIGMA, k: float = K, gamma: float = GAMMA, eps: float = EPS,
          phi: float = PHI) -> np.ndarray:
    grey = np.asarray(img.convert("RGB"), dtype=np.float32).mean(axis=2)
    g1 = cv2.GaussianBlur(grey, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    g2 = cv2.GaussianBlur(grey, (0, 0), sigma * k, borderType=cv2.BORDER_REPLICATE)
    d = (g1 - gamma * g2) / 255.0
    paper = np.where(d >= eps, 1.0, 1.0 + np.tanh(phi * (d - eps)))
    return (1.0 - paper).astype(np.float32)  # ink
