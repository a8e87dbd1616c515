"""A CNN feature backbone: the frozen convolutions of ImageNet VGG16, read at several depths.

It stands where Stable Diffusion stands for a DiffSketch style (issue 13): multi-scale features of a frozen
pretrained network, aggregated and fused with full-resolution detail (here the image itself) by a small trained
generator. No diffusion, no text, no noise: one forward pass per photo, so it trains and runs on a CPU.

`load_cnn_backbone(source)` takes
- "vgg16" (default): torchvision's ImageNet VGG16 convs. With DIFFSKETCH_WEIGHTS_DIR set they come from
  `vgg16/vgg16_features_fp16.safetensors` there (offline); unset, torchvision's own download/cache is used;
- a path to such a safetensors file (torchvision key names `features.N.weight`);
- "vgg16-random": the same network with torchvision's seeded random init (what pretrained features buy);
- "tiny-cnn": a VGG-shaped net with a few channels and random weights, for tests.
Random-weight backbones say so (`is_demo`); nothing ever swaps one in for real weights.

Features are taken after the last ReLU of each stage (relu1_2 ... relu5_3), from an ImageNet-normalised [0, 1]
RGB input, every convolution padded by reflection rather than zeros (the weights are the same; zeros told the
network where the border is, and styles learned to draw a frame there: style/cnn_generator.py). Photos are
processed at `work_side` on their long side (256 by default: the cost of VGG16 grows with
the pixels, so a 512^2 photo is read at 256 and the generator adds the full-resolution detail from the image).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import settings
from ..errors import MissingWeightsError

KIND = "cnn"
VGG16 = "vgg16"
VGG16_RANDOM = "vgg16-random"
TINY_CNN = "tiny-cnn"
WEIGHTS_FILE = Path("vgg16") / "vgg16_features_fp16.safetensors"
TORCHVISION_FILE = "vgg16-397923af.pth"  # torchvision's IMAGENET1K_V1 checkpoint name in the torch hub cache
DEFAULT_WORK_SIDE = 256

# stage widths; "M" = 2x2 max-pool. Same layout (and so the same Sequential indices) as torchvision's vgg16.
_CFGS = {
    VGG16: [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    TINY_CNN: [[8], [16], [16], [32], [32]],
}
TAP_NAMES = ("relu1", "relu2", "relu3", "relu4", "relu5")  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 for VGG16
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _vgg_features(stages: list[list[int]], padding: str = "reflect") -> tuple[nn.Sequential, dict[str, int],
                                                                              dict[str, int]]:
    """torchvision's VGG `features` up to the last ReLU (the final pool is dropped): layers, tap index, tap width.
    `padding`: the convolutions' padding mode (torchvision's is zeros)."""
    layers: list[nn.Module] = []
    taps, widths, cin = {}, {}, 3
    for s, widths_s in enumerate(stages):
        if s:
            layers.append(nn.MaxPool2d(2, 2))
        for w in widths_s:
            layers += [nn.Conv2d(cin, w, 3, padding=1, padding_mode=padding), nn.ReLU(inplace=True)]
            cin = w
        taps[TAP_NAMES[s]] = len(layers) - 1
        widths[TAP_NAMES[s]] = cin
    net = nn.Sequential(*layers)
    for m in net.modules():  # torchvision's VGG init, seeded by the caller
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return net, taps, widths


@dataclass
class CNNBackbone:
    net: nn.Sequential
    taps: dict[str, int]  # tap name -> index of its ReLU in `net`
    channels: dict[str, int]
    source: str
    weights: str  # "imagenet" | "random": part of the fingerprint, so a style never moves between them
    arch: str
    is_demo: bool
    device: torch.device
    work_side: int = DEFAULT_WORK_SIDE
    kind: str = KIND
    padding: str = "reflect"

    @property
    def fingerprint(self) -> dict:
        """What a trained style must match to be used with this backbone."""
        return {"kind": KIND, "arch": self.arch, "weights": self.weights, "source": self.source,
                "taps": list(self.taps), "channels": [self.channels[t] for t in self.taps], "padding": self.padding}

    @property
    def resolution(self) -> int:
        return self.work_side

    def work_size(self, w: int, h: int, side: int | None = None) -> tuple[int, int]:
        """(W, H) a w x h photo is read at: long side `side`, multiples of 16 (small photos are upscaled, so a style
        always sees photos at the scale it was trained at). At least 32 px a side: the deepest taps (1/16) then
        keep 2 px, which reflected padding needs."""
        side = side or self.work_side
        s = side / max(w, h)
        return max(32, round(w * s / 16) * 16), max(32, round(h * s / 16) * 16)

    @torch.no_grad()
    def extract(self, rgb: torch.Tensor, taps: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        """rgb (B, 3, H, W) in [0, 1] -> {tap: (B, C, H / 2^s, W / 2^s)}; runs only as deep as the taps need."""
        want = tuple(taps or self.taps)
        last = max(self.taps[t] for t in want)
        x = (rgb.to(self.device, torch.float32) - _MEAN.to(self.device)) / _STD.to(self.device)
        out = {}
        for i, layer in enumerate(self.net[:last + 1]):
            x = layer(x)
            for t in want:
                if self.taps[t] == i:
                    out[t] = x.clone()  # the next in-place ReLU would overwrite it
        return out


def weights_file() -> Path | None:
    """The local VGG16 safetensors when DIFFSKETCH_WEIGHTS_DIR is set (the path, even if missing), else None."""
    root = settings.weights_dir()
    return None if root is None else root / WEIGHTS_FILE


def needs() -> str | None:
    """None when the pretrained VGG16 can load here without a download; otherwise what to set."""
    try:
        path = weights_file()
    except MissingWeightsError as exc:
        return str(exc)
    if path is not None:
        return None if path.is_file() else f"VGG16 weights not found at {path} ({settings.WEIGHTS_DIR_ENV})."
    if (Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE).is_file():
        return None
    return _missing_text("it is not in the torch hub cache") if settings.hub_offline() else None


def _missing_text(why: str) -> str:
    return (f"The VGG16 (ImageNet) weights are not available: {why}. Set {settings.WEIGHTS_DIR_ENV} to a folder "
            f"holding {WEIGHTS_FILE} (see its SOURCE.md), or run once online so torchvision downloads them.")


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise MissingWeightsError(f"{path} is not a readable safetensors file ({exc}).") from None
    return {k[len("features."):]: v.float() for k, v in state.items() if k.startswith("features.")}


def _pretrained_state(source: str) -> tuple[dict[str, torch.Tensor], str]:
    if source != VGG16:
        path = Path(source).expanduser()
        if not path.is_file():
            raise MissingWeightsError(_missing_text(f"{source} is not a file"))
        return _load_state(path), str(path)
    path = weights_file()
    if path is not None:
        if not path.is_file():
            raise MissingWeightsError(_missing_text(f"{path} does not exist ({settings.WEIGHTS_DIR_ENV})"))
        return _load_state(path), str(path)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE
    if settings.hub_offline() and not cached.is_file():
        raise MissingWeightsError(_missing_text("offline (HF_HUB_OFFLINE) and not in the torch hub cache"))
    from torchvision.models import VGG16_Weights, vgg16

    try:  # torchvision's own checkpoint, downloaded from its own URL: not a user file
        model = vgg16(weights=VGG16_Weights.IMAGENET1K_V1)
    except Exception as exc:  # no network, proxy, disk: say what to do instead
        raise MissingWeightsError(_missing_text(f"torchvision's download failed ({type(exc).__name__})")) from exc
    return model.features.state_dict(), "torchvision:IMAGENET1K_V1"


def source_for(fingerprint: dict) -> str:
    """The `load_cnn_backbone` source that rebuilds the backbone a style's fingerprint names (its `padding` goes
    with it); a fingerprint of another backbone gets VGG16 here and is refused by the style's compatibility check."""
    if fingerprint.get("arch") == TINY_CNN:
        return TINY_CNN
    return VGG16_RANDOM if fingerprint.get("weights") == "random" else VGG16


def load_cnn_backbone(source: str | None = None, device: str | torch.device | None = None,
                      work_side: int = DEFAULT_WORK_SIDE, seed: int = 0, padding: str = "reflect") -> CNNBackbone:
    """`padding`: "reflect" (what styles are trained on since CPU style version 2) or "zeros" (torchvision's)."""
    if padding not in ("reflect", "zeros"):
        raise ValueError(f"padding {padding!r}: 'reflect' or 'zeros'")
    source = source or VGG16
    dev = torch.device(device or "cpu")
    arch = TINY_CNN if source == TINY_CNN else VGG16
    torch.manual_seed(seed)
    net, taps, widths = _vgg_features(_CFGS[arch], padding)
    random_weights = source in (TINY_CNN, VGG16_RANDOM)
    where = source
    if not random_weights:
        state, where = _pretrained_state(source)
        state = {k: v for k, v in state.items() if int(k.split(".")[0]) < len(net)}
        result = net.load_state_dict(state, strict=False)
        if result.missing_keys:
            raise MissingWeightsError(f"{where} does not hold VGG16 conv weights (missing {result.missing_keys[:3]}).")
    net = net.eval().requires_grad_(False).to(dev)
    return CNNBackbone(net, taps, widths, where, "random" if random_weights else "imagenet", arch,
                       random_weights, dev, work_side, padding=padding)


def resize_rgb(rgb: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """Area-downscale / bilinear-upscale a (B, 3, H, W) batch to (H', W')."""
    if tuple(rgb.shape[-2:]) == tuple(size_hw):
        return rgb
    mode = "area" if size_hw[0] < rgb.shape[-2] else "bilinear"
    return F.interpolate(rgb, size=size_hw, mode=mode, **({} if mode == "area" else {"align_corners": False}))
