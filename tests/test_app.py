import gradio as gr
import pytest
from PIL import Image

from conftest import ROOT, ink_mask, requires_shared

import app


@requires_shared
def test_classic_sketch_on_a_real_photo(photo_path):
    shown, download, info = app.classic_sketch(str(photo_path), "pidinet")
    assert shown == download and shown.endswith(".png")
    with Image.open(shown) as out, Image.open(photo_path) as src:
        assert out.format == "PNG" and out.size == src.size
        assert 0.005 < ink_mask(out, 128).mean() < 0.5
    assert "PiDiNet" in info


def test_classic_sketch_on_shipped_example():
    example = ROOT / "assets" / "photos" / "coffee.png"
    shown, _, _ = app.classic_sketch(str(example), "canny")
    assert Image.open(shown).size == Image.open(example).size


def test_classic_sketch_errors_are_messages(tmp_path):
    with pytest.raises(gr.Error, match="Upload a photo"):
        app.classic_sketch(None, "hed")
    bogus = tmp_path / "bogus.png"
    bogus.write_bytes(b"\x89PNG not really")
    with pytest.raises(gr.Error, match="Could not read"):
        app.classic_sketch(str(bogus), "hed")


def test_demo_builds_with_classic_tab():
    assert isinstance(app.demo, gr.Blocks)
    labels = [b.label for b in app.demo.blocks.values() if isinstance(b, gr.Tab)]
    assert "Classic sketch" in labels
