"""A model soup of one-shot styles (style/soup.py), on CPU styles: the runs, their average, events, Stop, bad input."""

import json
import threading

import pytest
import torch

from diffsketch_core.diffusion import cnn
from diffsketch_core.diffusion.cnn import load_cnn_backbone
from diffsketch_core.errors import BadInputError
from diffsketch_core.style.cnn_training import CNNOneShotTrainer, CNNTrainConfig, cnn_trainer
from diffsketch_core.style.soup import SoupTrainer
from diffsketch_core.style.store import load_style
from test_cnn_style import _card


@pytest.fixture(scope="module")
def tiny_cnn():
    return load_cnn_backbone(cnn.TINY_CNN, work_side=96)


def _config(**kw):
    return CNNTrainConfig(**({"iterations": 3, "bank": 4, "batch": 2, "lpips": 0.0, "preview_every": 2,
                              "prior": False} | kw))


def _weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_the_soup_is_the_mean_of_independent_runs_and_saves(tiny_cnn, tmp_path):
    photo, sketch = _card()
    torch.manual_seed(0)
    start = cnn_trainer(tiny_cnn, photo, sketch, _config()).generator  # runs == 1: the plain trainer
    assert isinstance(cnn_trainer(tiny_cnn, photo, sketch, _config()), CNNOneShotTrainer)

    def fresh():
        gen = type(start).from_config(start.config)
        gen.load_state_dict(start.state_dict())
        return gen

    alone = []
    for seed in (7, 8):  # what the soup's runs are: plain fine-tunes of the same start, seeds 7 and 8
        t = CNNOneShotTrainer(tiny_cnn, photo, sketch, _config(seed=seed), generator=fresh())
        t.run()
        alone.append(_weights(t.generator))
    assert any(not torch.equal(alone[0][k], alone[1][k]) for k in alone[0])  # the seeds made different runs
    soup = cnn_trainer(tiny_cnn, photo, sketch, _config(seed=7), runs=2, generator=fresh())
    assert isinstance(soup, SoupTrainer)
    events = []
    style = soup.run(events.append)
    for k, v in style.generator.state_dict().items():
        torch.testing.assert_close(v, (alone[0][k] + alone[1][k]) / 2)
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("done") == 1
    assert [e.iteration for e in events if e.kind in ("step", "preview")] == [1, 2, 3, 4, 5, 6]
    assert {e.total for e in events} == {6} and soup.iteration == 6
    assert style.meta["runs_averaged"] == 2 and style.meta["iterations"] == 6
    loaded = load_style(style.save(tmp_path / "soup"), tiny_cnn)
    assert loaded.meta["runs_averaged"] == 2


def test_stop_keeps_the_runs_already_finished(tiny_cnn):
    photo, sketch = _card()
    stop = threading.Event()
    soup = cnn_trainer(tiny_cnn, photo, sketch, _config(), runs=3)
    kinds = []

    def on_event(e):
        kinds.append(e.kind)
        if e.iteration == 4:  # one step into the second run
            first = soup.finished[0]
            assert len(soup.finished) == 1 and soup.current.iteration == 1
            on_event.first = first
            stop.set()

    style = soup.run(on_event, stop)
    assert kinds[-1] == "cancelled" and soup.iteration == 4
    assert style.meta["runs_averaged"] == 1  # the half-trained second run is left out
    for k, v in style.generator.state_dict().items():
        torch.testing.assert_close(v, on_event.first[k])


def test_runs_out_of_range_are_refused(tiny_cnn):
    photo, sketch = _card()
    for runs in (0, 6):
        with pytest.raises(BadInputError, match="Runs averaged must be between 1 and 5"):
            cnn_trainer(tiny_cnn, photo, sketch, _config(), runs=runs)


def test_cli_runs(tmp_path, capsys):
    from diffsketch_core.style import cnn_training

    photo, sketch = _card()
    photo.save(tmp_path / "p.png")
    sketch.save(tmp_path / "s.png")
    args = ["--photo", str(tmp_path / "p.png"), "--sketch", str(tmp_path / "s.png"), "--backbone", "tiny-cnn",
            "--iterations", "2"]
    assert cnn_training.main(args + ["--out", str(tmp_path / "style"), "--runs", "2"]) == 0
    assert json.loads((tmp_path / "style" / "style.json").read_text())["runs_averaged"] == 2
    assert cnn_training.main(args + ["--out", str(tmp_path / "x"), "--runs", "9"]) == 2
    assert "error: Runs averaged must be between 1 and 5, not 9." in capsys.readouterr().err
