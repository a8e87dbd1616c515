import urllib.error

import lpips
import numpy as np
import pytest

from diffsketch_core.errors import MissingWeightsError
from diffsketch_core.metrics import frechet_distance, recognition
from diffsketch_core.perceptual import load_lpips, lpips_needs


def test_frechet_distance_zero_for_same_set_and_grows_with_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 8))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    near, far = frechet_distance(a, a + 0.1), frechet_distance(a, a + 1.0)
    assert 0 < near < far and far == pytest.approx(8.0, rel=1e-3)  # mean shift of 1 in 8 dims


def test_recognition():
    assert recognition(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), np.array([0, 1, 1])) == pytest.approx(2 / 3)


@pytest.mark.parametrize("exc, said", [
    (urllib.error.URLError("[Errno -3] name resolution"), "(no connection to download them)"),
    (RuntimeError("bad zip"), "(downloading them failed: bad zip)")])
def test_lpips_without_weights_says_what_to_set_and_why_in_words(monkeypatch, exc, said):
    monkeypatch.delenv("DIFFSKETCH_WEIGHTS_DIR", raising=False)

    def no_download(*args, **kwargs):
        raise exc

    monkeypatch.setattr(lpips, "LPIPS", no_download)
    with pytest.raises(MissingWeightsError) as err:
        load_lpips()
    assert "DIFFSKETCH_WEIGHTS_DIR" in str(err.value) and said in str(err.value) and "URLError" not in str(err.value)


def test_lpips_with_a_weights_folder_lacking_alexnet_names_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("DIFFSKETCH_WEIGHTS_DIR", str(tmp_path))
    expected = str(tmp_path / "lpips" / "alexnet_features.safetensors")
    assert expected in lpips_needs()
    with pytest.raises(MissingWeightsError, match="not found at") as err:
        load_lpips()
    assert str(err.value) == lpips_needs()
