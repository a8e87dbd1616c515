"""The checkpoints in checkpoints/ load, run fast, and behave as trained models should."""

import time

import numpy as np
import pytest
import torch

from conftest import SHARED
from diffsketch_core.strokes.diffusion import StrokeDiffusion, sketch_lengths, uniform_timesteps, with_pen
from diffsketch_core.strokes.format import END, LIFT, batch_fixed
from diffsketch_core.strokes.generate import generate
from diffsketch_core.strokes.loaders import CHECKPOINTS, DEFAULT_MODEL, load_stroke_model

pytestmark = pytest.mark.skipif(not (DEFAULT_MODEL / "config.json").is_file(), reason="no shipped stroke model")
DATA = SHARED / "data" / "quickdraw" / "spg_stroke3"


def test_checkpoints_are_small_fp16_safetensors():
    for folder in CHECKPOINTS.iterdir():
        if folder.is_dir():
            weights = list(folder.glob("*.safetensors"))
            assert weights and all(w.stat().st_size < 10 * 2**20 for w in weights), folder
            from safetensors import safe_open
            with safe_open(str(weights[0]), "pt") as f:
                floats = [f.get_tensor(k) for k in f.keys() if f.get_tensor(k).is_floating_point()]
                assert floats and all(t.dtype == torch.float16 for t in floats)


def test_shipped_model_generates_in_a_few_seconds():
    load_stroke_model()
    start = time.perf_counter()
    gen = generate("apple", n=4, sampler="ddim", steps=30, seed=0)
    assert time.perf_counter() - start < 10 and len(gen.sketches) == 4


def test_generated_sketches_stop_at_the_end_state():
    model = load_stroke_model()
    diff = StrokeDiffusion()
    res = diff.sample(model, torch.arange(8) % model.num_classes, uniform_timesteps(30), guidance=4.0, seed=0)
    n = sketch_lengths(res.pen)
    assert (n < model.config.max_len).all() and (n >= 8).all(), "every sketch ends, after drawing something"
    from diffsketch_core.strokes.format import from_fixed
    for offsets, pen, k in zip(res.offsets, res.pen, n):
        assert len(from_fixed(offsets.numpy(), pen.numpy(), 1.0, dots=True)) == max(int(k), 2)  # nothing after END
        # the padding is trained as zero motion: the model moves much less after END than before it
        assert offsets[k:].abs().mean() < 0.75 * offsets[:k].abs().mean()


@pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data/quickdraw")
def test_pen_decoding_gives_continuous_strokes_on_lightly_noised_real_data():
    from diffsketch_core.strokes.format import load_npz

    model = load_stroke_model()
    sketches = load_npz(DATA / "apple.npz", "test")[:32]
    b = batch_fixed(sketches, model.config.max_len, model.config.offset_scale)
    diff = StrokeDiffusion()
    t = torch.full((len(sketches),), 10)
    x0 = with_pen(model, torch.from_numpy(b.offsets), torch.from_numpy(b.pen))
    x = diff.q_sample(x0, t, torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)))
    label = list(model.config.class_names).index("apple")
    with torch.no_grad():
        _, logits = model(x, t, torch.full((len(sketches),), label))
    pen = logits.argmax(-1).numpy()
    real = np.arange(model.config.max_len)[None] < b.lengths[:, None]
    assert (pen[real] == b.pen[real]).mean() > 0.9
    assert (pen[~real] == END).mean() > 0.9
    lifts = (pen == LIFT) & real
    true_lifts = (b.pen == LIFT) & real
    # strokes end where the artist lifted the pen (the first model, without a pen channel, never chose LIFT)
    assert (lifts & true_lifts).sum() / true_lifts.sum() > 0.8 and (lifts & true_lifts).sum() / lifts.sum() > 0.8
    alternating = (lifts[:, :-1] & lifts[:, 1:]).sum() / max(lifts.sum(), 1)
    assert alternating < 0.2  # lifts end strokes; they do not come in runs (the dashed-stroke defect)
