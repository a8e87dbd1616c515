"""Differentiable sketch extractors: an RGB picture in [0, 1] -> soft ink in [0, 1] (1 = line), as torch modules so
a sketch loss on their output can send its gradient back into the picture (DiffSketching's sketch perceptual loss).

- "hed": our HED network with its BSDS500 weights (needs DIFFSKETCH_WEIGHTS_DIR, see extractors.hed);
- "tiny": a small random conv net for tests and the demo backbone's pipeline; it says so (`is_random`) and is never
  used unless asked for by name.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import BadInputError
from ..extractors import hed

EXTRACTORS = ("hed", "tiny")


class SketchExtractor(nn.Module):
    """Base: forward(rgb (B, 3, H, W) in [0, 1]) -> ink (B, 1, H, W) in [0, 1]. Frozen: gradients reach only the input."""

    name = "?"
    is_random = False


class HEDExtractor(SketchExtractor):
    name = "hed"

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.net(rgb.flip(1) * 255.0)  # HED reads Caffe-style BGR in 0..255


class TinyExtractor(SketchExtractor):
    """Three seeded random convs ending in a sigmoid: a differentiable picture -> ink map with no meaning."""

    name = "tiny"
    is_random = True

    def __init__(self, seed: int = 0, width: int = 8):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.Tanh(),
                                     nn.Conv2d(width, width, 3, padding=1), nn.Tanh(), nn.Conv2d(width, 1, 3, padding=1))
        self.requires_grad_(False).eval()

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(rgb * 2.0 - 1.0))


def needs(name: str) -> str | None:
    """None when extractor `name` can run here; otherwise the sentence saying what it needs."""
    if name == "hed":
        return hed.needs()
    return None if name == "tiny" else f"Unknown sketch extractor {name!r}; choose one of: {', '.join(EXTRACTORS)}."


def load_extractor(name: str = "hed", device: str | torch.device = "cpu") -> SketchExtractor:
    if name == "tiny":
        return TinyExtractor().to(device)
    if name != "hed":
        raise BadInputError(needs(name))
    # hed's own cached loader: the same frozen network the Classic tab uses, here called with gradients on
    net = hed._load(str(hed.weights_path()))
    if torch.device(device).type != "cpu":  # leave the cached CPU copy where the Classic tab expects it
        net = copy.deepcopy(net)
    return HEDExtractor(net).to(device).eval()
