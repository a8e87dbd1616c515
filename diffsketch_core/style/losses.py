"""DiffSketch's training losses, with CLIP used the way CLIP expects (the official code does neither):

  on the example:  15 * LPIPS-alex(S_rec, S_ex) + 30 * L1(S_rec, S_ex) + 30 * (1 - cos(E(S_rec), E(S_ex)))
  per sample i:    1 * L_across + 1 * L_within, CLIP-space directional losses (StyleGAN-NADA / Mind-the-Gap):
                   L_across = 1 - cos(E(S_i) - E(I_i), E(S_ex) - E(I_ex))   (image->sketch direction)
                   L_within = 1 - cos(E(S_i) - E(S_ex), E(I_i) - E(I_ex))   (sketch change follows image change)

E is CLIP's image encoder (+ projection) on CLIP's own preprocessing (resize, centre crop, CLIP mean/std),
L2-normalised. A zero direction (sample == example) contributes 0, not an undefined cosine.
Sketches are (B, 1, H, W) in [0, 1]; images (B, 3, H, W) in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..perceptual import ClipImageEncoder, sketch_lpips


@dataclass
class LossWeights:
    lpips: float = 15.0
    l1: float = 30.0
    clip: float = 30.0
    across: float = 1.0
    within: float = 1.0


def direction_loss(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean of 1 - cos(a, b) over rows; rows where either direction is zero contribute 0."""
    na, nb = a.norm(dim=-1), b.norm(dim=-1)
    valid = (na > eps) & (nb > eps)
    cos = (a * b).sum(-1) / (na * nb).clamp_min(eps)
    return torch.where(valid, 1 - cos, torch.zeros_like(cos)).mean()


class DiffSketchLoss(nn.Module):
    def __init__(self, clip: ClipImageEncoder, lpips_model: nn.Module | None, weights: LossWeights = LossWeights()):
        super().__init__()
        self.clip, self.lpips, self.w = clip, lpips_model, weights

    def embed_example(self, sketch: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return self.clip(sketch), self.clip(image)

    def forward(self, s_rec: torch.Tensor, s_ex: torch.Tensor, e_s_ex: torch.Tensor, e_i_ex: torch.Tensor,
                s_i: torch.Tensor | None = None, i_i: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        parts = {"l1": F.l1_loss(s_rec, s_ex), "clip": direction_loss(self.clip(s_rec), e_s_ex.expand(len(s_rec), -1))}
        if self.lpips is not None:
            parts["lpips"] = sketch_lpips(self.lpips, s_rec, s_ex).mean()
        if s_i is not None and i_i is not None:
            e_s, e_i = self.clip(s_i), self.clip(i_i)
            parts["across"] = direction_loss(e_s - e_i, (e_s_ex - e_i_ex).expand_as(e_s))
            parts["within"] = direction_loss(e_s - e_s_ex, e_i - e_i_ex)
        parts["total"] = sum(getattr(self.w, k) * v for k, v in parts.items())
        return parts
