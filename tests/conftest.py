"""Offline, single-threaded, pointed at ../shared/weights (present locally and in CI)."""

import contextlib
import os
import socket
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


@pytest.fixture(scope="module")
def pair():
    """A one-shot training pair: a 128x128 photo of a house and the sun, and its line sketch."""
    from PIL import Image, ImageDraw

    photo = Image.new("RGB", (128, 128), (200, 210, 230))
    d = ImageDraw.Draw(photo)
    d.rectangle([30, 30, 90, 100], fill=(90, 60, 40))
    d.ellipse([60, 10, 120, 60], fill=(240, 200, 40))
    sketch = Image.new("L", (128, 128), 255)
    d = ImageDraw.Draw(sketch)
    d.rectangle([30, 30, 90, 100], outline=0, width=2)
    d.ellipse([60, 10, 120, 60], outline=0, width=2)
    return photo, sketch


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def launched_app():
    """The app served on a free loopback port while the block runs; yields its URL (no trailing slash)."""
    import app

    port = free_port()
    app.demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        app.demo.close()
