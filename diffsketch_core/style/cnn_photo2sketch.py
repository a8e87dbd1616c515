"""Sketch any photo in a style trained on CNN features (issue 13).

The backbone reads the photo at the style's work size (long side 256 by default, the aspect kept); the
generator draws at the photo's own size, capped at `max_side` on the long side (then resized up), so a 512^2
photo costs one VGG16 pass at 256^2 plus a few small convolutions at 512^2. On a CPU both run as one ONNX Runtime
graph where it is installed (onnx_runtime.py; exported once per model and thread count, 1-2.5 s): the whole path
for a 512^2 photo 0.42 s against PyTorch's 0.50 s on 2 threads of this CPU, 0.74 against 0.92 on 1 (quiet
machine, 2026-12-06). Mirror-averaged (`mirror=True`, mirror.py; the app's default) the two passes are one batch
of that same graph: 0.82 s on 2 threads, LPIPS to the target 0.216 -> 0.211 over the one-shot benchmark's 9 runs.

CLI: python -m diffsketch_core.style.cnn_photo2sketch --style styles/mine photos/ out/   (a folder or single files)
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch
from PIL import Image
from torch import nn

from .. import cli, onnx_runtime
from ..diffusion.cnn import VGG16, CNNBackbone, load_cnn_backbone
from ..images import ImageLike, load_image
from .. import mirror as mirroring
from .photo2sketch import SketchResult, sketch_folder, split_inputs
from .store import Style, attach, check_compatible, load_style

MAX_SIDE = 1024


def _tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, np.float32) / 255.0).permute(2, 0, 1)[None]


class _Apply(nn.Module):
    """The backbone and the generator as one network: the photo at work size and at output size -> the sketch."""

    def __init__(self, backbone: CNNBackbone, generator: nn.Module):
        super().__init__()
        self.bb, self.net, self.gen = backbone, backbone.net, generator  # net: so the export sees VGG16's weights

    def forward(self, work: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
        return self.gen(self.bb.extract(work, self.gen.taps), full)


class CNNPhotoToSketch:
    """`mirror`: average each sketch with that of the mirrored photo (mirror.py; twice the time). Copies made by
    `with_mirror` share the exported graphs, so switching mirror averaging exports nothing again."""

    def __init__(self, style: Style, backbone: CNNBackbone, max_side: int = MAX_SIDE, mirror: bool = False):
        check_compatible(style.generator.config.backbone, backbone)
        self.style, self.bb, self.max_side, self.mirror = style, backbone, max_side, mirror
        self.work_side = int(style.generator.config.work_side)
        self._runners: dict[int, nn.Module | onnx_runtime.OnnxModule] = {}

    def with_mirror(self, mirror: bool) -> CNNPhotoToSketch:
        """This style applied with mirror averaging on or off, sharing the graphs already exported."""
        if mirror == self.mirror:
            return self
        twin = copy.copy(self)
        twin.mirror = mirror
        return twin

    def runner(self) -> nn.Module | onnx_runtime.OnnxModule:
        """(work, full) -> sketch, one pass: ONNX Runtime on a CPU where installed, else PyTorch; built once per
        thread count (the style's weights do not change once it is applied)."""
        threads = torch.get_num_threads()
        if threads not in self._runners:
            torch_path = _Apply(self.bb, self.style.generator.eval()).eval()
            free = {"work": {0: "batch", 2: "h", 3: "w"}, "full": {0: "batch", 2: "H", 3: "W"},
                    "out": {0: "batch", 2: "H", 3: "W"}}
            fast = None
            if self.bb.device.type == "cpu":
                fast = onnx_runtime.try_onnx(torch_path, [torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 128, 128)],
                                             ["work", "full"], free, threads, "the style")
            self._runners[threads] = fast or torch_path
        return self._runners[threads]

    @torch.no_grad()
    def sketch_array(self, photo: Image.Image, out_size: tuple[int, int] | None = None) -> np.ndarray:
        """(H, W) float in [0, 1] (1 = paper) at `out_size` (W, H; default the photo's size, capped)."""
        w, h = photo.size
        if out_size is None:
            s = min(1.0, self.max_side / max(w, h))
            out_size = (max(1, round(w * s)), max(1, round(h * s)))
        work = photo.resize(self.bb.work_size(w, h, self.work_side), Image.Resampling.LANCZOS)
        full = photo if photo.size == out_size else photo.resize(out_size, Image.Resampling.LANCZOS)
        inputs = _tensor(work), _tensor(full).to(self.bb.device)
        out = mirroring.average(self.runner(), *inputs) if self.mirror else self.runner()(*inputs)
        return out[0, 0].float().clamp(0, 1).cpu().numpy()

    def __call__(self, photo: ImageLike) -> SketchResult:
        loaded = load_image(photo)
        arr = self.sketch_array(loaded.image)
        img = Image.fromarray((arr * 255).round().astype(np.uint8), "L")
        if img.size != loaded.image.size:
            img = img.resize(loaded.image.size, Image.Resampling.BICUBIC)
        return SketchResult(img, loaded.notes)


def _parser() -> argparse.ArgumentParser:
    p = cli.parser("diffsketch_core.style.cnn_photo2sketch", __doc__)
    p.add_argument("--style", required=True, help="style folder from diffsketch_core.style.cnn_training")
    p.add_argument("--backbone", default=VGG16, help="'vgg16' (default), a VGG16 safetensors file, or 'tiny-cnn'")
    p.add_argument("--mirror", action="store_true", help="average with the mirrored photo's sketch (twice the time)")
    p.add_argument("inputs", nargs="+", help="photos or folders of photos, then the output folder")
    return p


def _main(args: argparse.Namespace) -> int:
    sources, out_dir = split_inputs(args.inputs)
    style = load_style(args.style)
    bb = load_cnn_backbone(args.backbone)
    return sketch_folder(CNNPhotoToSketch(attach(style, bb), bb, mirror=args.mirror), sources, out_dir)


def main(argv: list[str] | None = None) -> int:
    return cli.run(_parser(), _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
