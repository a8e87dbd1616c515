"""Mirror averaging: a sketch network's output averaged with its output for the mirrored input, mirrored back.

A network trained on mirrored copies of its examples (CPU styles, the Fast student) should draw a mirrored photo
as the mirror of its drawing, but it is only near that: where it hesitates over a faint edge, the two passes
disagree, and their mean keeps what both draw. Measured on BSDS500 test photos (README): CPU styles' LPIPS to
their target 0.216 -> 0.211 over the one-shot benchmark's 9 runs (8 better), the Fast student's to HED 0.0933 ->
0.0899; it costs a second pass (both run as one batch of two: a 512x512 photo in a CPU style 0.40 -> 0.82 s on 2
threads). A style whose drawing has a direction (hatching at 45 degrees) would
be blurred by it, but such a style cannot be learned here anyway: training mirrors the example too.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageOps


def average(run: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
    """run(*inputs) averaged with run(*mirrored inputs) mirrored back; every input is an image batch (B, C, H, W)
    mirrored left-right, and both passes go through `run` (a module, or an ONNX Runtime graph with a free batch
    size) as one batch."""
    out = run(*(torch.cat([x, x.flip(-1)]) for x in inputs))
    pair = out.unflatten(0, (2, -1))  # (2, B, ...): the plain pass, then the mirrored one
    return (pair[0] + pair[1].flip(-1)) / 2


def averaged_sketcher(sketch: Callable[[Image.Image], np.ndarray]) -> Callable[[Image.Image], np.ndarray]:
    """The same average for a photo -> ink function that is not one batched pass (any distillation teacher):
    its ink for the photo averaged with its ink for the mirrored photo, mirrored back."""

    def averaged(img: Image.Image) -> np.ndarray:
        plain = np.asarray(sketch(img), dtype=np.float32)
        mirrored = np.asarray(sketch(ImageOps.mirror(img)), dtype=np.float32)
        return (plain + mirrored[:, ::-1]) / 2

    return averaged
