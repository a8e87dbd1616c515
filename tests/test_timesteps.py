import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from diffsketch_core.errors import BadInputError
from diffsketch_core.diffusion.timesteps import collect, read_timesteps, select


def test_collect_pools_every_grid_step(tiny_backbone):
    vectors, grid = collect(tiny_backbone, n_images=3, steps=10, pool=2, batch=2)
    assert vectors.shape[:2] == (3, 10) and len(grid) == 10 and grid == sorted(grid, reverse=True)
    assert np.isfinite(vectors).all()


def test_select_finds_planted_timestep_groups():
    """Features that change in three regimes (early / middle / late steps) give k = 3 and one timestep each."""
    rng = np.random.default_rng(0)
    grid = list(range(981, 0, -20))  # 50 steps
    centres = rng.normal(size=(3, 40)) * 10
    regime = np.array([0] * 15 + [1] * 20 + [2] * 15)
    vectors = centres[regime][None] + rng.normal(size=(6, 50, 40)) * 0.3
    out = select(vectors, grid, range(2, 7))
    assert out["k"] == 3 and len(out["timesteps"]) == 3
    for t, lo, hi in zip(sorted(out["timesteps"], reverse=True), (0, 15, 35), (15, 35, 50)):
        assert t in grid[lo:hi]
    assert set(out["scores"]) == {"2", "3", "4", "5", "6"}


def test_cli_writes_json_the_trainer_reads(tmp_path):
    out = tmp_path / "ts.json"
    res = subprocess.run([sys.executable, "-m", "diffsketch_core.diffusion.timesteps", "--backbone", "tiny", "--images", "2",
                          "--steps", "10", "--k-min", "2", "--k-max", "4", "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    ts = read_timesteps(out)
    assert 1 <= len(ts) <= 4 and all(0 <= t < 1000 for t in ts)
    assert json.loads(out.read_text())["k"] in (2, 3, 4)


def test_bad_timesteps_file(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"timesteps": [5000]}')
    with pytest.raises(BadInputError, match="\\[0, 1000\\)"):
        read_timesteps(bad)
    bad.write_text("nope")
    with pytest.raises(BadInputError, match="not a timesteps file"):
        read_timesteps(bad)


def test_default_analysis_uses_noise_and_extract_not_the_trajectory(tiny_backbone):
    """The path training uses: the features at grid timestep t of image i equal FeatureExtractor's noise-and-extract
    of that image's z0; the trajectory path gives other numbers."""
    from diffsketch_core.diffusion.timesteps import collect_by_tap

    taps = ["up_blocks.3.resnets.2", "up_blocks.1.attentions.0:self-q"]
    by_tap, grid = collect_by_tap(tiny_backbone, n_images=2, steps=5, pool=2, batch=2, taps=taps)
    assert list(by_tap) == taps and by_tap[taps[0]].shape == (2, 5, 2 * 8 * 4)
    extract, _ = collect(tiny_backbone, n_images=2, steps=5, pool=2, batch=2, taps=taps)
    trajectory, _ = collect(tiny_backbone, n_images=2, steps=5, pool=2, batch=2, taps=taps, path="trajectory")
    assert extract.shape == trajectory.shape
    np.testing.assert_array_equal(extract, np.concatenate(list(by_tap.values()), -1))
    assert not np.allclose(extract, trajectory)


def test_select_does_not_standardize_unless_asked():
    """A near-constant dimension with tiny noise is ignored raw, but z-scoring blows it up to rival the signal."""
    rng = np.random.default_rng(1)
    grid = list(range(981, 0, -20))
    regime = np.array([0] * 25 + [1] * 25)
    signal = np.where(regime == 0, -5.0, 5.0)[None, :, None] + rng.normal(size=(4, 50, 1)) * 0.1
    noise = rng.normal(size=(4, 50, 30)) * 1e-3
    vectors = np.concatenate([signal, noise], -1)
    raw = select(vectors, grid, range(2, 4), k=2)
    assert sorted(set(raw["labels"][:25])) != sorted(set(raw["labels"][25:]))
    assert raw["scores"]["2"]["silhouette"] > select(vectors, grid, range(2, 4), k=2, standardize=True)["scores"]["2"]["silhouette"]


def test_cli_ranks_taps(tmp_path):
    from diffsketch_core.diffusion.timesteps import main

    out = tmp_path / "ts.json"
    assert main(["--backbone", "tiny", "--images", "2", "--steps", "6", "--k", "2", "--k-min", "2", "--k-max", "2",
                 "--rank-taps", "--out", str(out),
                 "--taps", "up_blocks.1.resnets.0:res-out,up_blocks.1.attentions.0:attn-out"]) == 0
    ranking = json.loads(out.read_text())["tap_ranking"]
    assert set(ranking) == {"up_blocks.1.resnets.0:res-out", "up_blocks.1.attentions.0:attn-out"}
