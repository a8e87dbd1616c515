"""The sketch student: a small image-to-image network that draws a teacher's sketch of a photo in a fraction of a
second on a CPU, and the shipped one as the extractor "fast" (distilled from HED on BSDS500 photos, see
checkpoints/README.md; the one extractor that needs no third-party weights, so it works on a fresh offline
machine). The distillation that makes students lives in style/distill.py; a style's own student in style/student.py.

    student = SketchStudent()                 # ~1.2 M parameters
    ink = student(rgb)                        # rgb (B, 3, H, W) in 0..1 -> ink (B, 1, H, W) in 0..1, 1 = line
    edges(img)                                # the extractor call: the shipped student on a PIL photo

Shape (chosen for CPU latency, measured in benchmarks/student.py): no convolution runs at full resolution.
The photo enters space-to-depth (each 2x2 block of pixels becomes 12 channels at 1/2 resolution), a U-Net of
plain 3x3 residual blocks does its work at 1/4..1/16 resolution (where a 3x3 conv is cheap and sees far),
each level adds its lateral on the way up, and a head at 1/2 resolution that sees the photo's own pixels again
predicts the 4 pixels of each 2x2 block (depth-to-space), so thin lines stay where they are. No normalisation
layers (a residual branch starts at zero instead), so inference is conv + ReLU only. Any input size works: inputs
are padded to a multiple of the total stride and the output cropped back.

Inference (`runner`, used by `sketch_with`) goes through ONNX Runtime when `onnx` and `onnxruntime` are installed,
else PyTorch channels-last. Measured at 512x512, batch 1, on this shared 2-core CPU (load 4-6,
benchmarks/student.py and an interleaved A/B): ONNX Runtime 0.12 s at 2 threads (0.08 on 1), PyTorch
channels-last 0.21 (contiguous ~1.7x slower than channels-last, torch.compile no faster than channels-last).
`runner(student, mirror=True)` averages with the mirrored photo's ink (mirror.py): twice the time, closer to HED.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from PIL import Image
from torch import nn

from .. import mirror as mirroring
from .. import onnx_runtime
from ..checkpoints import load_saved
from ..errors import BadInputError, MissingWeightsError

CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "student_hed"


class _Residual(nn.Module):
    """relu(x + conv(relu(conv(x)))), the second conv zero-initialised so a fresh block passes x through."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


class SketchStudent(ModelMixin, ConfigMixin):
    """widths[i] channels at 1/2^(i+1) resolution with blocks[i] residual blocks there; the head has `head`
    channels at 1/2 resolution."""

    @register_to_config
    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128), blocks: tuple[int, ...] = (0, 1, 2, 3),
                 head: int = 16, in_channels: int = 3, out_channels: int = 1):
        super().__init__()
        widths, blocks = tuple(int(w) for w in widths), tuple(int(b) for b in blocks)
        if len(widths) != len(blocks) or not widths:
            raise ValueError(f"widths {widths} and blocks {blocks} must have the same, non-zero length")
        self.total_stride = 2 ** len(widths)
        self.downs = nn.ModuleList()
        self.stages = nn.ModuleList()
        cin = in_channels * 4
        for i, (w, n) in enumerate(zip(widths, blocks)):
            self.downs.append(nn.Conv2d(cin, w, 3, stride=1 if i == 0 else 2, padding=1))
            self.stages.append(nn.Sequential(*[_Residual(w) for _ in range(n)]))
            cin = w
        # decoder: project the coarser level to the finer width, add the lateral, one 3x3 conv
        self.lifts = nn.ModuleList(nn.Conv2d(widths[i + 1], widths[i], 1) for i in range(len(widths) - 1))
        self.mixes = nn.ModuleList(nn.Conv2d(widths[i], widths[i], 3, padding=1) for i in range(len(widths) - 1))
        self.head1 = nn.Conv2d(widths[0] + in_channels * 4, head, 3, padding=1)
        self.head2 = nn.Conv2d(head, out_channels * 4, 3, padding=1)

    def logits(self, rgb: torch.Tensor) -> torch.Tensor:
        if rgb.ndim != 4 or rgb.shape[1] != self.config.in_channels:
            raise BadInputError(f"The student takes (B, {self.config.in_channels}, H, W) images, got {tuple(rgb.shape)}.")
        h, w = rgb.shape[-2:]
        return self.body(padded(rgb, self.total_stride) - 0.5)[..., :h, :w]

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a centred image (rgb - 0.5) whose sides are multiples of `total_stride` (no size logic, so
        it exports to ONNX with free height and width)."""
        x2 = F.pixel_unshuffle(x, 2)
        feats = []
        y = x2
        for down, stage in zip(self.downs, self.stages):
            y = stage(F.relu(down(y)))
            feats.append(y)
        y = feats[-1]
        for i in range(len(feats) - 2, -1, -1):
            y = F.interpolate(self.lifts[i](y), size=feats[i].shape[-2:], mode="bilinear", align_corners=False)
            y = F.relu(self.mixes[i](F.relu(y + feats[i])))
        y = F.relu(self.head1(torch.cat([y, x2], 1)))
        return F.pixel_shuffle(self.head2(y), 2)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(rgb))


def padded(x: torch.Tensor, stride: int) -> torch.Tensor:
    """x padded at the bottom and right to multiples of `stride`; reflect keeps the border from reading as an edge."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    if not (ph or pw):
        return x
    return F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_student(path: str | Path) -> SketchStudent:
    """A saved student (config.json + safetensors) in fp32 eval mode; a folder that is not one is refused."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise BadInputError(f"{path} is not a student folder (no config.json).")
    return load_saved(SketchStudent, path, "loadable sketch student").eval().requires_grad_(False)


def needs(path: str | Path = CHECKPOINT) -> str | None:
    path = Path(path)
    if (path / "config.json").is_file() and any(path.glob("*.safetensors")):
        return None
    return (f"The fast student's checkpoint is missing from {path} (it ships with the app in checkpoints/; "
            "restore it from git, or distil one: python -m diffsketch_core.style.distill).")


@functools.lru_cache(maxsize=4)
def _load(path: str) -> SketchStudent:
    missing = needs(path)
    if missing:
        raise MissingWeightsError(missing)
    return load_student(path).to(memory_format=torch.channels_last)


def load(path: str | Path = CHECKPOINT) -> SketchStudent:
    return _load(str(Path(path).resolve()))


# ---------------------------------------------------------------- inference runtime

Runner = Callable[[torch.Tensor], torch.Tensor]  # rgb (B, 3, H, W) in 0..1 -> ink (B, 1, H, W)


class _Body(nn.Module):
    # the exported graph: sizes already padded, so height and width stay free in ONNX
    def __init__(self, student: SketchStudent):
        super().__init__()
        self.student = student

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.student.body(x))


class OnnxStudent:
    """`student` run by ONNX Runtime (onnx_runtime.py; height and width free): at 512x512 on this busy 2-core CPU
    0.12 s against PyTorch's 0.21 (benchmarks/student.py), and steadier under load. Same ink to 1e-5."""

    def __init__(self, student: SketchStudent, threads: int, module: onnx_runtime.OnnxModule | None = None):
        self.stride = student.total_stride
        self.module = module or onnx_runtime.OnnxModule(*_export_args(student), threads)

    def __call__(self, rgb: torch.Tensor) -> torch.Tensor:
        h, w = rgb.shape[-2:]
        return self.module(padded(rgb.float(), self.stride) - 0.5)[..., :h, :w]


def runner(student: SketchStudent, mirror: bool = False) -> Runner:
    """The fastest measured way to run a trained student (weights no longer changing) at the current torch thread
    count: ONNX Runtime when installed, else PyTorch channels-last. Built once per model, thread count and `mirror`
    (averaged with the mirrored photo's ink, mirror.py: twice the time)."""
    threads = torch.get_num_threads()
    runners = student.__dict__.setdefault("_runners", {})
    key = ("onnx" if onnx_runtime.wanted() else "torch", threads, mirror)
    if key not in runners:
        # mirrored before the padding to the stride, so a mirrored photo gets exactly the mirrored ink
        plain = runner(student) if mirror else _build_runner(student, threads)
        runners[key] = (lambda rgb: mirroring.average(plain, rgb)) if mirror else plain
    return runners[key]


def _export_args(student: SketchStudent) -> tuple:
    free = {0: "batch", 2: "height", 3: "width"}
    return _Body(student), [torch.zeros(1, student.config.in_channels, 64, 64)], ["x"], {"x": free, "out": free}


def _build_runner(student: SketchStudent, threads: int) -> Runner:
    module = onnx_runtime.try_onnx(*_export_args(student), threads, "the student")
    if module is not None:
        return OnnxStudent(student, threads, module)
    student.to(memory_format=torch.channels_last)  # faster than contiguous for its 3x3 convs on CPU (measured)
    return lambda rgb: student(rgb.contiguous(memory_format=torch.channels_last))


BORDER = 8  # reflected pixels around the photo: without them the zero padding of the convs draws the frame


@torch.inference_mode()
def sketch_with(student: SketchStudent, img: Image.Image, mirror: bool = False) -> np.ndarray:
    x = torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    h, w = x.shape[-2:]
    b = min(BORDER, h - 1, w - 1)
    if b > 0:
        x = F.pad(x, (b, b, b, b), mode="reflect")
    out = runner(student, mirror)(x)[0, 0]
    return out[b:b + h, b:b + w].float().numpy()


def edges(img: Image.Image) -> np.ndarray:
    return sketch_with(load(), img)
