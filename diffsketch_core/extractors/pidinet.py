"""PiDiNet through controlnet_aux, from `<weights dir>/pidinet/` or, when no weights dir is set, from the hub
(`lllyasviel/Annotators`, byte-identical to the upstream file). Research-use licence: see README."""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from ..errors import MissingWeightsError
from .. import settings

HUB_REPO = "lllyasviel/Annotators"
WEIGHTS_FILE = "table5_pidinet.pth"


def _where() -> str:
    root = settings.weights_dir()
    if root is None:
        return HUB_REPO
    folder = root / "pidinet"
    if not (folder / WEIGHTS_FILE).is_file():
        raise MissingWeightsError(f"PiDiNet weights not found at {folder / WEIGHTS_FILE} "
                                  f"({settings.WEIGHTS_DIR_ENV}={root}).")
    return str(folder)


def needs() -> str | None:
    """None when the weights are on this machine (weights folder or the hub cache)."""
    try:
        where = _where()
    except MissingWeightsError as exc:
        return str(exc)
    if where != HUB_REPO:
        return None
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(HUB_REPO, WEIGHTS_FILE), str):
        return None
    return (f"PiDiNet needs {WEIGHTS_FILE}: set {settings.WEIGHTS_DIR_ENV} to a folder containing "
            f"pidinet/{WEIGHTS_FILE}" + ("." if settings.hub_offline() else
                                         f", or let it download from the hub ({HUB_REPO}) at first use."))


@functools.lru_cache(maxsize=2)
def _load(where: str):
    from controlnet_aux import PidiNetDetector  # slow import (timm); only when PiDiNet is used

    try:
        return PidiNetDetector.from_pretrained(where)
    except Exception as exc:  # hub and file errors come in many types; all mean "not obtainable here"
        raise MissingWeightsError(
            f"Could not load PiDiNet from {where!r} ({type(exc).__name__}). Offline, set "
            f"{settings.WEIGHTS_DIR_ENV} to a folder containing pidinet/{WEIGHTS_FILE}.") from exc


def edges(img: Image.Image) -> np.ndarray:
    detector = _load(_where())
    w, h = img.size
    side = min(w, h)
    # controlnet_aux rescales the short side to detect_resolution; keep the image's own scale
    out = detector(np.asarray(img.convert("RGB")), detect_resolution=side, image_resolution=side,
                   safe=False, output_type="pil")
    out = out.convert("L").resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(out, dtype=np.float32) / 255.0
