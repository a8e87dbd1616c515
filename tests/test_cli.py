"""Every `python -m` entry point: --help works, and a bad argument gives exit status 2 with an `error:` line."""

import importlib
import subprocess
import sys

import pytest

from conftest import ROOT

COMMANDS = ["diffsketch_core.extractors", "diffsketch_core.style.training", "diffsketch_core.style.photo2sketch",
            "diffsketch_core.diffusion.timesteps", "diffsketch_core.strokes.classifier", "diffsketch_core.strokes.train",
            "diffsketch_core.strokes.fit_recognizability", "diffsketch_core.style.cnn_training",
            "diffsketch_core.style.cnn_photo2sketch", "diffsketch_core.style.distill", "diffsketch_core.style.views",
            "diffsketch_core.picture.sketch2image", "diffsketch_core.picture.finetune"]


def _main(name):
    module = importlib.import_module(name + ".__main__" if name.endswith("extractors") else name)
    return module.main


@pytest.mark.parametrize("name", COMMANDS)
def test_help_and_a_bad_argument(name, capsys):
    main = _main(name)
    assert main(["--help"]) == 0
    assert f"python -m {name}" in capsys.readouterr().out
    assert main(["--no-such-flag"]) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("name", COMMANDS)
def test_threads_must_be_positive(name, capsys):
    assert _main(name)(["--threads", "0"]) == 2
    assert "error:" in capsys.readouterr().err


def test_a_diffsketch_error_is_one_error_line_and_exit_2(tmp_path):
    """Through the real `python -m` entry: a missing photo is the user's input, not a traceback."""
    out = subprocess.run([sys.executable, "-m", "diffsketch_core.extractors", "--method", "canny",
                          str(tmp_path / "missing.png"), str(tmp_path / "out.png")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr


def test_every_command_runs_as_a_module():
    """`python -m X --no-such-flag` for all of them at once (parallel processes: imports dominate)."""
    procs = [subprocess.Popen([sys.executable, "-m", n, "--no-such-flag"], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for n in COMMANDS]
    for name, p in zip(COMMANDS, procs):
        _, err = p.communicate(timeout=300)
        assert p.returncode == 2 and "error:" in err, (name, err[-500:])


@pytest.mark.parametrize("name, flags, said", [
    ("diffsketch_core.strokes.classifier", ["--epochs", "0"], "--epochs: must be at least 1, got 0"),
    ("diffsketch_core.strokes.classifier", ["--image-size", "2"], "--image-size: must be at least 16"),
    ("diffsketch_core.strokes.fit_recognizability", ["--every", "0"], "--every: must be at least 1"),
    ("diffsketch_core.strokes.fit_recognizability", ["--batches", "0"], "--batches: must be at least 1"),
    ("diffsketch_core.diffusion.timesteps", ["--out", "o", "--batch", "0"], "--batch: must be at least 1"),
    ("diffsketch_core.picture.finetune", ["--pair", "a", "b", "--out", "o", "--lpips", "-2"],
     "--lpips: must be 0 or more"),
    ("diffsketch_core.strokes.train", ["--lr", "nan"], "--lr: must be above 0, got nan"),
])
def test_numbers_out_of_range_are_usage_errors(name, flags, said, capsys):
    """Each number's range is its argparse type: said before anything loads (these were tracebacks)."""
    assert _main(name)(flags) == 2
    assert said in capsys.readouterr().err


def test_photo_to_sketch_says_a_wrong_style_folder_before_loading_sd(tmp_path, capsys, monkeypatch):
    from diffsketch_core.style import photo2sketch

    monkeypatch.setenv("DIFFSKETCH_SD_MODEL", str(tmp_path / "no-sd-here"))
    assert photo2sketch.main(["--style", str(tmp_path / "nope"), "p.png", str(tmp_path / "out")]) == 2
    assert "is not a DiffSketch style" in capsys.readouterr().err
