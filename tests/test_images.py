import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from diffsketch_core.budgets import MAX_PIXELS
from diffsketch_core.errors import BadInputError
from diffsketch_core.images import MAX_SIDE, ink_to_sketch, load_image


def test_grayscale_becomes_rgb_with_note():
    out = load_image(Image.new("L", (20, 10), 77))
    assert out.image.mode == "RGB" and out.image.size == (20, 10)
    assert out.image.getpixel((0, 0)) == (77, 77, 77) and any("Grayscale" in n for n in out.notes)


def test_rgba_transparency_is_white_paper():
    arr = np.zeros((10, 10, 4), np.uint8)
    arr[:5, :, 3] = 255  # top half opaque black, bottom half transparent
    out = load_image(arr)
    px = np.asarray(out.image)
    assert (px[:5] == 0).all() and (px[5:] == 255).all()
    assert any("Transparent" in n for n in out.notes)


def test_16bit_png_is_rescaled(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((16, 16), 65535, np.uint16)).save(path)
    out = load_image(path)
    assert np.asarray(out.image).min() == 255 and any("16-bit" in n for n in out.notes)


def test_huge_image_is_downscaled_with_note(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("L", (6000, 4000), 200).save(path)
    out = load_image(path)
    assert max(out.image.size) == MAX_SIDE and any("downscaled" in n for n in out.notes)


def png_header(width: int, height: int) -> bytes:
    """A valid PNG header claiming `width` x `height` pixels, with no pixel data: what a decompression bomb looks
    like before it is decoded (the real 600 MP one is a 633 KB file)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [8000, 9000, 30000])  # just over the budget, in Pillow's warn-only band, past it
def test_pixel_budget_is_enforced_from_the_header(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(side, side))
    tracemalloc.start()
    with pytest.raises(BadInputError, match=f"more than the {MAX_PIXELS / 1e6:.0f} MP this app decodes") as err:
        load_image(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20e6  # refused from the header: nothing decoded
    assert str(tmp_path) not in str(err.value)


@pytest.mark.parametrize("source, match", [
    (b"this is not an image", "Could not read"),
    (Image.new("RGB", (1, 1)), "at least"),
    ("/no/such/file.png", "No such image"),
    (np.zeros((4, 4, 2)), "shape"),
    (np.full((9, 9), np.nan), "NaN"),
    (None, "No image"),
])
def test_bad_images_raise_clear_errors(source, match):
    with pytest.raises(BadInputError, match=match):
        load_image(source)


@pytest.mark.parametrize("content", [b"hello", b""])
def test_text_or_empty_file_with_png_name_is_refused_without_its_path(tmp_path, content):
    path = tmp_path / "fake.png"
    path.write_bytes(content)
    with pytest.raises(BadInputError, match="Could not read") as err:
        load_image(path)
    assert str(tmp_path) not in str(err.value)


def test_ink_to_sketch_is_dark_on_white():
    sketch = ink_to_sketch(np.array([[0.0, 1.0]]))
    assert sketch.mode == "L" and list(sketch.getdata()) == [255, 0]
