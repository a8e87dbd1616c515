"""The CPU backbone kind in the app (issue 13): frozen ImageNet VGG16 features. The Backbone panel's source
"vgg16" selects it; the Style and Photo -> Sketch tabs dispatch here when it is loaded."""

from __future__ import annotations

import functools
from pathlib import Path

from diffsketch_core import settings
from diffsketch_core.diffusion import cnn
from diffsketch_core.style.cnn_photo2sketch import CNNPhotoToSketch
from diffsketch_core.style.cnn_training import CNNOneShotTrainer, CNNTrainConfig, cnn_trainer
from diffsketch_core.style.soup import SoupTrainer
from diffsketch_core.style.store import load_style

CPU_LABEL = "CPU: VGG16 features"
SD_LABEL = "Stable Diffusion 1.x"
CPU_SOURCE = cnn.VGG16
SOURCES = (CPU_SOURCE,)
BANNER = ("**Backbone: CPU: VGG16 features** (frozen ImageNet VGG16, no diffusion): a style trains from your one "
          "pair in a few minutes on a CPU, about 1 s per iteration. Stable Diffusion stays the paper's option on a GPU.")


def is_cnn(source: str | None) -> bool:
    return source in SOURCES


def sd_available() -> bool:
    """Whether the configured SD weights are here without a download (a local folder or the hub cache)."""
    source = settings.sd_model()
    if Path(source).expanduser().is_dir():
        return True
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(source, "model_index.json"), str)
    except Exception:  # not a hub id: nothing cached under it
        return False


def default_source() -> str:
    """SD when its weights are here; the CPU backbone when they are not and VGG16 loads; else SD (the panel
    then says what SD needs)."""
    if sd_available() or cnn.needs() is not None:
        return settings.sd_model()
    return cnn.VGG16


@functools.lru_cache(maxsize=1)
def backbone(source: str = cnn.VGG16) -> cnn.CNNBackbone:
    return cnn.load_cnn_backbone(source)


def any_backbone(source: str):
    """The loaded backbone of either kind."""
    from . import common

    return backbone(source) if is_cnn(source) else common.backbone(source)


def trainer(photo, sketch, iterations: int, source: str = cnn.VGG16, invert="auto",
            prior: bool = True, unlabeled: list[str] = (), runs: int = 1) -> CNNOneShotTrainer | SoupTrainer:
    """`unlabeled`: the artist's extra photos (no sketches) for the trainer's consistency term; `runs`: that many
    training runs averaged (style/soup.py)."""
    cfg = CNNTrainConfig(iterations=iterations, preview_every=max(1, min(25, iterations // 10)), prior=prior)
    return cnn_trainer(backbone(source), photo, sketch, cfg, runs, invert=invert, unlabeled=list(unlabeled))


def model(style_dir: str, source: str, mirror: bool = False) -> CNNPhotoToSketch:
    """The style ready to apply, kept for the next click: its ONNX Runtime graph takes 1-2.5 s to export, more
    than a photo takes; with mirror averaging on or off it is the same graph. Keyed by the weights' times, so a
    style saved again in the same folder is reloaded."""
    stamp = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in Path(style_dir).glob("*.safetensors")))
    return _model(str(style_dir), source, stamp).with_mirror(bool(mirror))


@functools.lru_cache(maxsize=2)  # the last two styles
def _model(style_dir: str, source: str, stamp: tuple) -> CNNPhotoToSketch:
    bb = backbone(source)
    return CNNPhotoToSketch(load_style(style_dir, bb), bb)
