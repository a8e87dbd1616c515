import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, ink_mask, requires_shared
from diffsketch_core import settings
from diffsketch_core.errors import BadInputError, MissingWeightsError
from diffsketch_core.extractors import METHODS, extract_sketch

RECT = (30, 25, 70, 65)  # x0, y0, x1, y1 of the black square in the shapes_image fixture


def _outline_coverage(ink, box, reach=2):
    """Fraction of the box's outline pixels with ink within `reach` pixels."""
    near = cv2.dilate(ink.astype(np.uint8), np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)) > 0
    x0, y0, x1, y1 = box
    outline = np.concatenate([near[y0, x0:x1 + 1], near[y1, x0:x1 + 1], near[y0:y1 + 1, x0], near[y0:y1 + 1, x1]])
    return outline.mean()


def _edge_band(shape, box, width=3):
    band = np.zeros(shape, bool)
    x0, y0, x1, y1 = box
    band[y0 - width:y1 + width + 1, x0 - width:x1 + width + 1] = True
    band[y0 + width:y1 - width + 1, x0 + width:x1 - width + 1] = False
    return band


@pytest.mark.parametrize("method", [pytest.param(m, marks=requires_shared) if m in ("hed", "pidinet") else m
                                    for m in METHODS])
def test_extractor_draws_ink_on_edges_and_leaves_paper_white(method, shapes_image):
    sketch = extract_sketch(shapes_image, method).image
    assert sketch.size == shapes_image.size and sketch.mode == "L"
    ink = ink_mask(sketch)
    band = _edge_band(ink.shape, RECT)
    assert _outline_coverage(ink, RECT) > 0.9, f"{method}: the square's outline is not drawn"
    paper = np.ones(ink.shape, bool)
    paper[15:80, 20:125] = False  # everything away from the shapes
    if method == "xdog":  # DiffSketch's XDoG is tonal: flat paper comes out mid-grey, never black
        grey = np.asarray(sketch, np.float32)
        assert grey[paper].min() > 100 and grey[paper].mean() > grey[band].mean() + 60
    else:
        assert ink[paper].mean() < 0.05, f"{method}: ink on blank paper"


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_extractors_take_any_image_mode(mode, shapes_image):
    sketch = extract_sketch(shapes_image.convert(mode), "canny").image
    assert sketch.size == shapes_image.size


def test_large_photo_is_processed_small_and_returned_full_size(shapes_image):
    big = shapes_image.resize((1024, 768))
    out = extract_sketch(big, "xdog", resolution=256)
    assert out.image.size == (1024, 768) and any("scaled back" in n for n in out.notes)


@pytest.mark.parametrize("resolution", [-5, 1, 63])
def test_resolution_below_the_minimum_is_refused(shapes_image, resolution):
    with pytest.raises(BadInputError, match="at least 64 px"):
        extract_sketch(shapes_image, "xdog", resolution=resolution)


def test_unknown_extractor_lists_choices(shapes_image):
    with pytest.raises(BadInputError, match="hed, pidinet, xdog, canny"):
        extract_sketch(shapes_image, "sobel")


def test_missing_weights_dir_is_a_clear_error(shapes_image, monkeypatch, tmp_path):
    monkeypatch.setenv(settings.WEIGHTS_DIR_ENV, str(tmp_path / "nope"))
    with pytest.raises(MissingWeightsError, match="not a directory"):
        extract_sketch(shapes_image, "hed")
    monkeypatch.setenv(settings.WEIGHTS_DIR_ENV, str(tmp_path))
    with pytest.raises(MissingWeightsError, match="hed_bsds500.safetensors"):
        extract_sketch(shapes_image, "hed")
    with pytest.raises(MissingWeightsError, match="table5_pidinet.pth"):
        extract_sketch(shapes_image, "pidinet")


def test_hed_without_weights_dir_says_what_to_set(shapes_image, monkeypatch):
    monkeypatch.delenv(settings.WEIGHTS_DIR_ENV, raising=False)
    with pytest.raises(MissingWeightsError, match=settings.WEIGHTS_DIR_ENV):
        extract_sketch(shapes_image, "hed")


def test_hed_on_real_photo_finds_contours(photo_path):
    sketch = extract_sketch(photo_path, "hed", resolution=256).image
    with Image.open(photo_path) as img:
        assert sketch.size == img.size
    frac = ink_mask(sketch, 128).mean()
    assert 0.01 < frac < 0.5


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "diffsketch_core.extractors", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_writes_sketch(tmp_path, shapes_image):
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    shapes_image.save(src)
    res = _cli("--method", "canny", str(src), str(dst))
    assert res.returncode == 0, res.stderr
    assert Image.open(dst).size == shapes_image.size


def test_cli_bad_input_exits_2_with_message(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    res = _cli("--method", "canny", str(bad), str(tmp_path / "o.png"))
    assert res.returncode == 2 and "error:" in res.stderr and "Traceback" not in res.stderr
    res = _cli("--method", "canny", "--resolution", "-5", str(bad), str(tmp_path / "o.png"))
    assert res.returncode == 2 and "error: The resolution must be 0" in res.stderr
    res = _cli("--method", "sobel", str(bad), str(tmp_path / "o.png"))
    assert res.returncode == 2 and "invalid choice" in res.stderr
