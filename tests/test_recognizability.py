import inspect

import numpy as np
import pytest
import torch

from diffsketch_core.strokes.classifier import SketchClassifier
from diffsketch_core.strokes.diffusion import uniform_timesteps
from diffsketch_core.strokes.generate import generate
from diffsketch_core.strokes.recognizability import (RecognizabilityNet, Trajectories, fit, record_trajectories,
                                                     schedule_from_curve, skip_sample)
from test_strokes_model import CLASSES, tiny_model


@pytest.fixture(scope="module")
def tiny_classifier():
    torch.manual_seed(0)
    return SketchClassifier(class_names=CLASSES, image_size=32, widths=(8, 8, 8), feature_dim=16).eval()


def test_trajectories_record_every_kth_step(tiny_classifier):
    labels = torch.tensor([0, 1, 2])
    tr = record_trajectories(tiny_model(), tiny_classifier, labels, every=100, seed=0)
    assert list(tr.t) == list(range(900, -1, -100))  # 999 is not a multiple of 100; 0 is always judged
    assert tr.correct.shape == (10, 3) and set(np.unique(tr.correct)) <= {0.0, 1.0}
    assert tr.x0.shape == (10, 3, 24, 2) and tr.logits.shape == (10, 3, 24, 3)


def test_schedule_from_curve_follows_the_change():
    t = np.arange(0, 1000, 10)
    flat = schedule_from_curve(t, np.zeros_like(t, dtype=float), 30)
    assert flat[0] == 999 and flat[-1] == 0 and len(flat) >= 28
    steps = np.diff(flat[::-1])
    assert steps.max() - steps.min() <= 2  # flat curve: uniform
    rising = schedule_from_curve(t, np.clip((500 - t) / 300, 0, 1), 30)  # r grows between t=500 and t=200
    inside = sum(200 <= s <= 500 for s in rising)
    assert inside > 0.5 * len(rising)


def test_h_phi_learns_a_timestep_rule():
    torch.manual_seed(0)
    s, b, n = 20, 16, 8
    t = np.arange(950, -1, -50)
    correct = np.repeat((t < 400).astype(np.float32)[:, None], b, 1)
    data = [Trajectories(t, correct, torch.randn(s, b, n, 2), torch.randn(s, b, n, 2), torch.randn(s, b, n, 3))]
    h = RecognizabilityNet(hidden=16, t_dim=16)
    final = fit(h, data, epochs=30, batch=64, lr=1e-2, log=lambda *_: None)
    assert final < 0.3
    with torch.no_grad():
        p = torch.sigmoid(h(torch.randn(2, n, 2), torch.randn(2, n, 2), torch.randn(2, n, 3), torch.tensor([900, 50])))
    assert p[0] < 0.5 < p[1]


def _rigged(bias: float) -> RecognizabilityNet:
    h = RecognizabilityNet(hidden=8, t_dim=8, schedule=(999, 600, 300, 100, 0))
    torch.nn.init.zeros_(h.head[-1].weight)
    torch.nn.init.constant_(h.head[-1].bias, bias)
    return h


def test_skip_sampler_is_cheaper_than_ddim30_and_deterministic():
    m = tiny_model()
    labels = torch.tensor([0, 1])
    low = skip_sample(m, _rigged(-5.0), labels, jump=100, fine=20, seed=1, max_nfe=None)  # never recognisable: always jump
    assert low.nfe == 10 and low.timesteps[:3] == [999, 899, 799]
    high = skip_sample(m, _rigged(5.0), labels, jump=100, fine=20, seed=1, max_nfe=None)  # recognisable: fine steps
    assert high.nfe == 50 and high.timesteps[1] == 979
    again = skip_sample(m, _rigged(-5.0), labels, jump=100, fine=20, seed=1, max_nfe=None)
    assert torch.equal(low.offsets, again.offsets) and low.nfe < len(uniform_timesteps(30))


def test_skip_sampler_switches_once_and_stops_asking_h():
    """Recognizability predicted low at first, high from t <= 600 (h sees the timestep): jump until then, fine
    steps after, and h is no longer evaluated once it has risen."""
    h = _rigged(0.0)
    calls = []
    h.register_forward_hook(lambda mod, args, out: calls.append(int(args[3][0])))
    real = h.forward
    h.forward = lambda x0, eps, logits, t: real(x0, eps, logits, t) + torch.where(t <= 600, 5.0, -5.0)
    res = skip_sample(tiny_model(), h, torch.tensor([0, 1]), jump=200, fine=100, threshold=0.5, seed=0,
                      max_nfe=None)
    assert res.timesteps == [999, 799, 599, 499, 399, 299, 199, 99]
    assert calls == [999, 799, 599]


def test_skip_sampler_keeps_to_its_evaluation_budget():
    """Recognisable from the start (fine steps of 20 would take 50 evaluations): the steps widen to fit max_nfe."""
    res = skip_sample(tiny_model(), _rigged(5.0), torch.tensor([0, 1]), jump=100, fine=20, seed=1, max_nfe=6)
    assert res.nfe == 6 and res.timesteps[0] == 999 and res.timesteps == sorted(set(res.timesteps), reverse=True)
    assert skip_sample(tiny_model(), _rigged(-5.0), torch.tensor([0]), jump=250, seed=1).nfe == 4  # jumps fit


def test_generate_with_skip_and_schedule_samplers():
    m = tiny_model()
    skip = generate("circle", n=2, sampler="skip", model=m, recognizability=_rigged(-5.0))
    sched = generate("circle", n=2, sampler="schedule", model=m, recognizability=_rigged(0.0))
    jump = inspect.signature(skip_sample).parameters["jump"].default
    assert skip.nfe == len(range(999, -1, -jump)) and sched.nfe == 5  # always jumping; the schedule's 5
    assert len(skip.sketches) == len(sched.sketches) == 2
