"""Measures used by the benchmarks: recognition accuracy and the Frechet distance between feature sets (the
classifier's 256-d embeddings for sketches: an FID computed with our own QuickDraw classifier)."""

from __future__ import annotations

import numpy as np
from scipy import linalg


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) for feature rows a (n, d) and b (m, d)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s_a @ s_b, disp=False)
    if not np.isfinite(covmean).all():  # near-singular covariances (few samples): regularise as pytorch-fid does
        eps = 1e-6 * np.eye(len(s_a))
        covmean = linalg.sqrtm((s_a + eps) @ (s_b + eps))
    covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean))


def recognition(probs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of class probabilities (n, k) against integer labels (n,)."""
    return float((np.asarray(probs).argmax(1) == np.asarray(labels)).mean())
