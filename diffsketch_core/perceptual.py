"""Pretrained perceptual networks shared by the style and strokes wings: CLIP's image tower (with CLIP's own
differentiable preprocessing and L2-normalised embeddings) and LPIPS(alex). Each loads from a hub id, a local
directory or the weights folder, and fails with a message naming the setting when it cannot."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import settings
from .errors import MissingWeightsError

CLIP_MODEL_ENV = "DIFFSKETCH_CLIP_MODEL"
DEFAULT_CLIP = "openai/clip-vit-base-patch32"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipImageEncoder(nn.Module):
    """Frozen CLIP image tower; differentiable preprocessing so gradients reach the generator."""

    def __init__(self, model):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.size = int(model.config.image_size)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        h, w = images.shape[-2:]
        s = self.size / min(h, w)
        nh, nw = max(self.size, round(h * s)), max(self.size, round(w * s))
        x = F.interpolate(images.float(), size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
        top, left = (nh - self.size) // 2, (nw - self.size) // 2
        x = x[..., top:top + self.size, left:left + self.size].clamp(0, 1)
        return (x - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model(pixel_values=self.preprocess(images)).image_embeds, dim=-1)


def load_clip(source: str | None = None, device: str | torch.device = "cpu") -> ClipImageEncoder:
    """CLIP image encoder from a hub id or local directory ($DIFFSKETCH_CLIP_MODEL, default ViT-B/32).
    "tiny" asks explicitly for the random test tower (demo mode only)."""
    from transformers import CLIPVisionModelWithProjection

    source = source or os.environ.get(CLIP_MODEL_ENV) or DEFAULT_CLIP
    if source == "tiny":
        return tiny_clip().to(device)
    try:
        model = CLIPVisionModelWithProjection.from_pretrained(source, local_files_only=settings.hub_offline())
    except Exception as exc:  # hub/network/filesystem errors come in many types
        raise MissingWeightsError(
            f"CLIP weights '{source}' are not available ({type(exc).__name__}). Download {DEFAULT_CLIP} on a machine "
            f"with internet and set {CLIP_MODEL_ENV} (or --clip) to its local directory.") from exc
    return ClipImageEncoder(model).to(device)


def tiny_clip(seed: int = 0) -> ClipImageEncoder:
    """A random CLIP-shaped image tower for tests (32 px input); never a stand-in for the real one."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
                               image_size=32, patch_size=8, projection_dim=16)
        return ClipImageEncoder(CLIPVisionModelWithProjection(cfg))


ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet, which lpips loads when no weights folder is set
LPIPS_WEIGHTS = "lpips/alexnet_features.safetensors"  # the AlexNet convs inside the weights folder


def _alexnet_missing(why: str) -> str:
    return f"LPIPS needs AlexNet weights: set {settings.WEIGHTS_DIR_ENV} to a folder with {LPIPS_WEIGHTS} ({why})."


def _alexnet_not_found(path: Path, root: Path) -> str:
    return f"LPIPS AlexNet weights not found at {path} ({settings.WEIGHTS_DIR_ENV}={root})."


def lpips_needs() -> str | None:
    """None when LPIPS(alex) can load here without a download; otherwise what to set."""
    try:
        root = settings.weights_dir()
    except MissingWeightsError as exc:
        return str(exc)
    if root is not None:
        path = root / LPIPS_WEIGHTS
        return None if path.is_file() else _alexnet_not_found(path, root)
    if (Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE).is_file():
        return None
    return _alexnet_missing("torchvision downloads them at first use when online")


def sketch_lpips(lpips_model: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS between grey sketches (B, 1, H, W) in [0, 1], one value per sketch: LPIPS takes RGB in [-1, 1]."""
    return lpips_model((a * 2 - 1).expand(-1, 3, -1, -1), (b * 2 - 1).expand(-1, 3, -1, -1))


def load_lpips(device: str | torch.device = "cpu") -> nn.Module:
    """LPIPS(alex) v0.1: linear heads from the lpips package, AlexNet convs from the weights directory
    (lpips/alexnet_features.safetensors); without a weights dir torchvision's download is tried and a failure
    is reported, never swallowed."""
    import lpips
    from safetensors.torch import load_file

    root = settings.weights_dir()
    if root is None:
        try:
            return lpips.LPIPS(net="alex", verbose=False).eval().requires_grad_(False).to(device)
        except Exception as exc:
            # urllib's URLError is an OSError: offline, the usual case here, deserves words, not a class name
            why = "no connection to download them" if isinstance(exc, OSError) else f"downloading them failed: {exc}"
            raise MissingWeightsError(_alexnet_missing(why)) from exc
    path = root / LPIPS_WEIGHTS
    if not path.is_file():
        raise MissingWeightsError(_alexnet_not_found(path, root))
    model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    convs = load_file(str(path))  # torchvision names: features.{0,3,6,8,10}.{weight,bias}
    slices = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}
    state = {f"net.slice{slices[int(k.split('.')[1])]}.{k.split('.', 1)[1]}": v for k, v in convs.items()}
    missing = model.load_state_dict(state, strict=False)
    if missing.unexpected_keys:
        raise MissingWeightsError(f"{path} does not hold AlexNet feature weights ({missing.unexpected_keys[:3]}).")
    return model.eval().requires_grad_(False).to(device)
