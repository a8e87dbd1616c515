"""Time budgets: a job that runs past its seconds stops at its next step with a sentence naming the budget."""

import threading
import time
from types import SimpleNamespace

import gradio as gr
import pytest
import torch

from diffsketch_core.errors import DiffSketchError, JobStopped
from diffsketch_core.jobs import Deadline, check
from diffsketch_core.strokes.diffusion import StrokeDiffusion, uniform_timesteps
from diffsketch_core.strokes.model import StrokeDenoiser
from ui import common, rectify, strokes

SQUARE = "[[[100,100],[300,100],[300,300],[100,300],[100,100]], [[100,100],[300,300]]]"


def test_deadline_trips_by_itself_and_with_its_companion_flag():
    d = Deadline(0.05, "Rectify")
    assert not d.is_set()
    check(d)  # not yet: no error
    time.sleep(0.08)
    assert d.is_set()
    with pytest.raises(JobStopped, match="time budget of 0.05 s") as err:
        check(d)
    assert isinstance(err.value, DiffSketchError)  # the app and CLI show it as a sentence
    stop = threading.Event()
    d = Deadline(60, "Training", also=stop)
    stop.set()
    with pytest.raises(JobStopped, match="Training was stopped"):
        check(d)
    check(None)  # no flag: never stops


def test_sampler_checks_the_flag_before_every_step():
    model = StrokeDenoiser(max_len=16, d_model=32, n_layers=1, n_heads=2, class_names=("a", "b"), offset_scale=10.0)
    diff = StrokeDiffusion(model.config.num_train_timesteps)
    calls = []

    class AfterTwo:  # set once two steps have run
        def is_set(self):
            calls.append(1)
            return len(calls) > 2

    with pytest.raises(JobStopped):
        diff.sample(model.eval(), torch.tensor([0, 1]), uniform_timesteps(10), cancel=AfterTwo())
    assert len(calls) == 3
    res = diff.sample(model.eval(), torch.tensor([0]), uniform_timesteps(3), cancel=threading.Event())
    assert res.nfe == 3


@pytest.mark.skipif(not common.STROKES_READY, reason="no stroke checkpoint")
def test_rectify_and_draw_stop_at_their_budget_with_a_sentence(monkeypatch):
    monkeypatch.setitem(rectify.REQUEST_SECONDS, "rectify", 0)
    monkeypatch.setitem(strokes.REQUEST_SECONDS, "draw_strokes", 0)
    req = SimpleNamespace(session_hash="deadline")
    with pytest.raises(gr.Error, match="Rectify stopped at its time budget of 0 s"):
        rectify.rectify_sketch(SQUARE, None, "auto", "rectify", 0.3, 0.3, 0, True, request=req)
    with pytest.raises(gr.Error, match="Heal stopped at its time budget"):
        rectify.rectify_sketch(SQUARE, None, "auto", "heal", 0.3, 0.3, 0, True, request=req)
    with pytest.raises(gr.Error, match="Drawing stopped at its time budget"):
        strokes.draw_strokes("apple", 2, "ddim", 0, request=req)
    monkeypatch.setitem(rectify.REQUEST_SECONDS, "rectify", 20)  # with its real budget it answers
    _, after, *_ = rectify.rectify_sketch(SQUARE, None, "auto", "rectify", 0.3, 0.3, 0, True, request=req)
    assert after.endswith(".png")


def test_a_closed_session_stops_its_running_jobs():
    """demo.unload (the page closed) sets the flag of every job that session still runs; other sessions go on."""
    mine, other = SimpleNamespace(session_hash="leaving"), SimpleNamespace(session_hash="staying")
    with common.while_connected(mine) as a, common.while_connected(mine) as b, common.while_connected(other) as c:
        assert a is b and not a.is_set()
        common.cleanup(mine)
        assert a.is_set() and not c.is_set()
        with pytest.raises(JobStopped, match="Rectify was stopped"):
            check(Deadline(60, "Rectify", also=a))
    assert "leaving" not in common._CONNECTED and "staying" not in common._CONNECTED  # entries live only while used


@pytest.mark.skipif(not common.STROKES_READY, reason="no stroke checkpoint")
def test_rectify_stops_when_its_page_closes_mid_job(monkeypatch):
    req = SimpleNamespace(session_hash="closing")
    real = rectify.rectify

    def close_then_rectify(*args, **kwargs):  # the page closes once the job has started
        common.cleanup(req)
        return real(*args, **kwargs)

    monkeypatch.setattr(rectify, "rectify", close_then_rectify)
    with pytest.raises(gr.Error, match="Rectify was stopped"):
        rectify.rectify_sketch(SQUARE, None, "auto", "rectify", 0.3, 0.3, 0, True, request=req)
