"""The user's sketch as a target, and DiffSketching's sketch perceptual loss against it.

`SketchTarget.load(image, (W, H))` turns any sketch image into ink in [0, 1] (1 = line) at the picture's size,
refusing an empty sheet and warning when the image looks like a photo rather than a drawing. `SketchLoss` compares
an extracted soft sketch with it by
- a distance-transform chamfer term: ink the picture puts far from the user's lines costs its distance to them
  (precision), the user's lines that the picture's ink does not come near cost 1 each (recall);
- LPIPS(alex) between the two drawings, when an LPIPS model is given.
Both are differentiable in the extracted ink, so their gradient can steer sampling or fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import distance_transform_edt
from torch import nn

from ..errors import BadInputError
from ..images import ImageLike, load_image
from ..style.sketches import load_sketch

INK_THRESHOLD = 0.3  # ink above this is a line for the distance transform
TOLERANCE = 0.015  # of the image side: ink this close to a user's line counts as on it
MIN_INK = 1e-4  # fraction of the sheet: less ink than this is no drawing
# A photo given as the sketch: colourful, or grey with mostly mid-tones. Measured at 256 px: 87 photos (assets/,
# Kodak, BSDS500) all have mean saturation >= 0.12; their XDoG/HED/PiDiNet/Canny sketches have 0 and at most 86%
# mid-tone pixels (HED's soft lines), and about half of the photos in grey have over 90%.
MAX_SATURATION, MAX_MIDTONES, MIDTONES = 0.1, 0.9, (0.15, 0.85)
QUIET_NOTES = ("Grayscale image converted to RGB.",)  # normal for a sketch, not worth telling


@dataclass
class SketchTarget:
    ink: torch.Tensor  # (1, 1, H, W) in [0, 1], 1 = line
    distance: torch.Tensor  # (1, 1, H, W): distance to the nearest line, in units of TOLERANCE x side
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.ink.shape[-1]), int(self.ink.shape[-2])

    @classmethod
    def load(cls, source: ImageLike, size: tuple[int, int]) -> "SketchTarget":
        """`size` = (W, H) of the picture it will steer."""
        if source is None:
            raise BadInputError("No sketch was given: upload a drawing or send one from Rectify or Draw strokes.")
        loaded = load_image(source)
        notes = photo_warning(loaded.image)
        paper, more = load_sketch(loaded.image)  # refuses a blank or all-black sheet
        notes += [n for n in loaded.notes + more if n not in notes and n not in QUIET_NOTES]
        img = Image.fromarray(np.round(paper * 255).astype(np.uint8), "L")
        if img.size != tuple(size):
            img = img.resize(tuple(size), Image.Resampling.LANCZOS)
        ink = 1.0 - np.asarray(img, dtype=np.float32) / 255.0
        lines = ink > INK_THRESHOLD
        if lines.mean() < MIN_INK:
            raise BadInputError("The sketch has no lines dark enough to follow: draw with darker or thicker lines.")
        radius = max(1.0, TOLERANCE * max(size))
        dist = distance_transform_edt(~lines).astype(np.float32) / radius
        return cls(torch.from_numpy(ink)[None, None], torch.from_numpy(dist)[None, None], notes)

    def control_image(self) -> torch.Tensor:
        """(1, 3, H, W) in [0, 1]: white lines on black, how scribble and lineart ControlNets read a sketch."""
        return self.ink.expand(-1, 3, -1, -1)


def photo_warning(img: Image.Image) -> list[str]:
    """A note when `img` looks like a photo, not a sketch (it is still used: the user may mean it)."""
    saturation = float((np.asarray(img.convert("HSV"), dtype=np.float32)[..., 1] / 255.0).mean())
    grey = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    midtones = float(((grey > MIDTONES[0]) & (grey < MIDTONES[1])).mean())
    if saturation <= MAX_SATURATION and midtones <= MAX_MIDTONES:
        return []
    return [f"This looks like a photo rather than a sketch (mean colour saturation {saturation:.2f}, {midtones:.0%} "
            "mid-tones); its dark areas are followed as lines. For a photo, make its sketch in Classic sketch first "
            "and use that."]


class SketchLoss(nn.Module):
    """loss(extracted ink (B, 1, H, W)) -> (B,) weighted chamfer + LPIPS to the target, and each part's batch mean."""

    def __init__(self, target: SketchTarget, chamfer: float = 1.0, lpips: float = 0.0, lpips_model: nn.Module | None = None):
        super().__init__()
        if lpips > 0 and lpips_model is None:
            raise ValueError("an LPIPS weight needs an LPIPS model")
        if chamfer <= 0 and lpips <= 0:
            raise BadInputError("The sketch loss needs a chamfer or an LPIPS weight above 0.")
        self.register_buffer("ink", target.ink.clone(), persistent=False)
        self.register_buffer("distance", target.distance.clone(), persistent=False)
        self.weights = {"chamfer": float(chamfer), "lpips": float(lpips)}
        self.lpips_model = lpips_model
        radius = max(1, round(TOLERANCE * max(target.size)))
        self.window = 2 * radius + 1
        self.parts: dict[str, float] = {}

    def chamfer(self, pred: torch.Tensor) -> torch.Tensor:
        lines = (self.ink > INK_THRESHOLD).float()
        precision = (pred * self.distance).sum((1, 2, 3)) / (pred.sum((1, 2, 3)) + 1.0)
        near = F.max_pool2d(pred, self.window, stride=1, padding=self.window // 2)  # ink within the tolerance
        recall = (lines * (1.0 - near)).sum((1, 2, 3)) / lines.sum().clamp_min(1.0)
        return precision + recall

    def perceptual(self, pred: torch.Tensor) -> torch.Tensor:
        as_image = lambda ink: (1.0 - ink).expand(-1, 3, -1, -1) * 2.0 - 1.0  # noqa: E731 - dark lines on white
        return self.lpips_model(as_image(pred), as_image(self.ink).expand(pred.shape[0], -1, -1, -1)).flatten()

    def forward(self, pred: torch.Tensor) -> torch.Tensor:
        pred = pred.float()
        if pred.shape[-2:] != self.ink.shape[-2:]:
            pred = F.interpolate(pred, size=self.ink.shape[-2:], mode="bilinear", align_corners=False)
        total = pred.new_zeros(pred.shape[0])
        for name, fn in (("chamfer", self.chamfer), ("lpips", self.perceptual)):
            if self.weights[name] > 0:
                value = fn(pred)
                self.parts[name] = float(value.detach().mean())
                total = total + self.weights[name] * value
        return total
