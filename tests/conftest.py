"""Offline, single-threaded, pointed at ../shared/weights (present locally and in CI)."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
os.environ["HF_HUB_OFFLINE"] = "1"
if (SHARED / "weights").is_dir():
    os.environ["DIFFSKETCH_WEIGHTS_DIR"] = str(SHARED / "weights")
else:  # a checkout without ../shared: weight-dependent tests skip, the rest still run
    os.environ.pop("DIFFSKETCH_WEIGHTS_DIR", None)
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

requires_shared = pytest.mark.skipif(not (SHARED / "weights").is_dir(), reason="needs ../shared/weights")

# On 2 busy cores, thread oversubscription made a tiny UNet 80x slower.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_backbone():
    from diffsketch_core.diffusion.backbone import load_backbone

    return load_backbone("tiny", device="cpu")


@pytest.fixture
def shapes_image():
    """A 128x96 photo-like test card: white paper, a black rectangle and a grey disc."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (128, 96), "white")
    d = ImageDraw.Draw(img)
    d.rectangle([30, 25, 70, 65], fill="black")
    d.ellipse([80, 30, 115, 65], fill=(120, 120, 120))
    return img


@pytest.fixture
def photo_path():
    path = SHARED / "data" / "photos" / "kodak" / "kodim23.png"
    if not path.is_file():
        pytest.skip("../shared photos not present")
    return path


def ink_mask(sketch, threshold=200):
    return np.asarray(sketch.convert("L")) < threshold
