"""CDST: condition diffusion sampling for training (DiffSketch section 5.4).

Training images are drawn by SD from text conditions sampled from a Gaussian prior over text-encoder outputs:
the shipped captions (assets/captions.txt, 1,200 of them) are encoded by the backbone's text encoder, flattened,
reduced by PCA (up to 512 components) and modelled as a Gaussian in PCA space; a sample maps back to a
(77, D) condition. The prior is fitted at first use and cached per backbone.

SDXL conditions its UNet on the token states AND the pooled embedding of its second text encoder; both are in the
(78, 2048) rows `Backbone.encode_prompt` gives (the pooled one as the last, zero-padded row), so the prior is one
joint Gaussian over both, its samples carry matching pooled embeddings, and the schedule mixes both alike.

Schedule over iterations i with horizon H: c_i = w_i * c_example + (1 - w_i) * c_random with
w_i = a / (a + b), a = sqrt(1 - i/H), b = sqrt(i/H), for i < H; afterwards c_i = c_random.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..diffusion.backbone import Backbone

CAPTIONS = Path(__file__).resolve().parents[2] / "assets" / "captions.txt"
CACHE_ENV = "DIFFSKETCH_CACHE"


def cdst_weight(i: int, horizon: int) -> float:
    """Weight of the example's condition at iteration i (1 at i = 0, 0.5 at H/2, 0 from H on)."""
    if horizon <= 0 or i >= horizon:
        return 0.0
    a, b = math.sqrt(1 - i / horizon), math.sqrt(i / horizon)
    return a / (a + b)


def read_captions(path: Path = CAPTIONS) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass
class ConditionPrior:
    components: torch.Tensor  # (k, D) PCA basis
    data_mean: torch.Tensor  # (D,)
    score_mean: torch.Tensor  # (k,)
    score_chol: torch.Tensor  # (k, k) Cholesky factor of the score covariance
    shape: tuple[int, int]  # (tokens, width)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(n, len(self.score_mean), generator=generator)
        scores = self.score_mean + z @ self.score_chol.T
        return (scores @ self.components + self.data_mean).view(n, *self.shape)

    def save(self, path: Path) -> None:
        tensors = {"components": self.components, "data_mean": self.data_mean, "score_mean": self.score_mean,
                   "score_chol": self.score_chol, "shape": torch.tensor(self.shape)}
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))

    @classmethod
    def load(cls, path: Path) -> "ConditionPrior":
        t = load_file(str(path))
        return cls(t["components"], t["data_mean"], t["score_mean"], t["score_chol"], tuple(t["shape"].tolist()))


@torch.no_grad()
def fit_prior(backbone: Backbone, captions: list[str], n_components: int = 512, batch: int = 64) -> ConditionPrior:
    from sklearn.decomposition import PCA

    embeds = torch.cat([backbone.encode_prompt(captions[i:i + batch]).float().cpu()
                        for i in range(0, len(captions), batch)])
    shape = tuple(embeds.shape[1:])
    x = embeds.flatten(1).numpy().astype(np.float64)
    k = min(n_components, len(captions) - 1, x.shape[1])
    pca = PCA(n_components=k, svd_solver="randomized", random_state=0).fit(x)
    scores = pca.transform(x)
    cov = np.cov(scores, rowvar=False) + 1e-6 * np.eye(k)
    return ConditionPrior(torch.tensor(pca.components_, dtype=torch.float32), torch.tensor(pca.mean_, dtype=torch.float32),
                          torch.tensor(scores.mean(0), dtype=torch.float32),
                          torch.tensor(np.linalg.cholesky(cov), dtype=torch.float32), shape)


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "diffsketch")


def prior_for(backbone: Backbone, captions_path: Path = CAPTIONS, n_components: int = 512) -> ConditionPrior:
    """The CDST prior of this backbone, fitted once and cached."""
    key = json.dumps([backbone.fingerprint, n_components, hashlib.sha256(captions_path.read_bytes()).hexdigest()],
                     sort_keys=True)
    path = cache_dir() / f"cdst-prior-{hashlib.sha256(key.encode()).hexdigest()[:16]}.safetensors"
    if path.is_file():
        return ConditionPrior.load(path)
    prior = fit_prior(backbone, read_captions(captions_path), n_components)
    path.parent.mkdir(parents=True, exist_ok=True)
    prior.save(path)
    return prior


class CDSTConditions:
    """Iteration -> text condition, mixing the example's caption embedding with prior samples.

    The prior sample of iteration i depends only on (seed, i), not on how many were drawn before, so a training
    resumed at any iteration (the app trains in chunks) draws the same conditions as one uninterrupted run."""

    def __init__(self, prior: ConditionPrior, example: torch.Tensor, horizon: int = 1000, seed: int = 50):
        self.prior, self.example, self.horizon, self.seed = prior, example.float().cpu(), horizon, seed

    def __call__(self, i: int, n: int = 1) -> torch.Tensor:
        w = cdst_weight(i, self.horizon)
        gen = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, i]).generate_state(1)[0]))
        return w * self.example.expand(n, -1, -1) + (1 - w) * self.prior.sample(n, gen)
