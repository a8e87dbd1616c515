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

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import settings
from .errors import MissingWeightsError

CLIP_MODEL_ENV = "DIFFSKETCH_CLIP_MODEL"
DEFAULT_CLIP = "openai/clip-vit-base-patch32"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class LossWeights:
    lpips: float = 15.0
    l1: float = 30.0
    clip: float = 30.0
    across: float = 1.0
    within: float = 1.0


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
            raise MissingWeightsError(
                f"LPIPS needs AlexNet weights: set {settings.WEIGHTS_DIR_ENV} to a folder with "
                f"lpips/alexnet_features.safetensors ({type(exc).__name__} while downloading them).") from exc
    path = root / "lpips" / "alexnet_features.safetensors"
    if not path.is_file():
        raise MissingWeightsError(f"LPIPS AlexNet weights not found at {path} ({settings.WEIGHTS_DIR_ENV}={root}).")
    model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    convs = load_file(str(path))  # torchvision names: features.{0,3,6,8,10}.{weight,bias}
    slices = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}
    state = {f"net.slice{slices[int(k.split('.')[1])]}.{k.split('.', 1)[1]}": v for k, v in convs.items()}
    missing = model.load_state_dict(state, strict=False)
    if missing.unexpected_keys:
        raise MissingWeightsError(f"{path} does not hold AlexNet feature weights ({missing.unexpected_keys[:3]}).")
    return model.eval().requires_grad_(False).to(device)


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
            to_pm1 = lambda s: (s * 2 - 1).expand(-1, 3, -1, -1)  # noqa: E731 (LPIPS takes [-1, 1] RGB)
            parts["lpips"] = self.lpips(to_pm1(s_rec), to_pm1(s_ex)).mean()
        if s_i is not None and i_i is not None:
            e_s, e_i = self.clip(s_i), self.clip(i_i)
            parts["across"] = direction_loss(e_s - e_i, (e_s_ex - e_i_ex).expand_as(e_s))
            parts["within"] = direction_loss(e_s - e_s_ex, e_i - e_i_ex)
        parts["total"] = sum(getattr(self.w, k) * v for k, v in parts.items())
        return parts
