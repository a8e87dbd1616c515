import numpy as np
import pytest

from diffsketch_core.metrics import frechet_distance, recognition


def test_frechet_distance_zero_for_same_set_and_grows_with_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 8))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    near, far = frechet_distance(a, a + 0.1), frechet_distance(a, a + 1.0)
    assert 0 < near < far and far == pytest.approx(8.0, rel=1e-3)  # mean shift of 1 in 8 dims


def test_recognition():
    assert recognition(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), np.array([0, 1, 1])) == pytest.approx(2 / 3)
