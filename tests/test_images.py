import numpy as np
import pytest
from PIL import Image

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
    Image.new("L", (10000, 10000), 200).save(path)
    out = load_image(path)
    assert max(out.image.size) == MAX_SIDE and any("downscaled" in n for n in out.notes)


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


def test_text_file_with_png_name_is_refused(tmp_path):
    path = tmp_path / "fake.png"
    path.write_text("hello")
    with pytest.raises(BadInputError, match="Could not read"):
        load_image(path)


def test_ink_to_sketch_is_dark_on_white():
    sketch = ink_to_sketch(np.array([[0.0, 1.0]]))
    assert sketch.mode == "L" and list(sketch.getdata()) == [255, 0]
