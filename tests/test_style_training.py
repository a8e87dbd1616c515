import threading

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from conftest import requires_shared
from diffsketch_core.style.conditions import CDSTConditions, ConditionPrior, cdst_weight, fit_prior, read_captions
from diffsketch_core.errors import BadInputError, MissingWeightsError
from diffsketch_core.diffusion.features import FeatureExtractor
from diffsketch_core.style.generator import generator_for
from diffsketch_core.perceptual import load_clip, load_lpips, tiny_clip
from diffsketch_core.style.losses import DiffSketchLoss, direction_loss
from diffsketch_core.style.photo2sketch import PhotoToSketch
from diffsketch_core.style.store import load_style
from diffsketch_core.style.training import OneShotTrainer, TrainConfig

FAST = dict(sample_steps=2, gen_batch=2, preview_every=5, timesteps=(61, 501, 941))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    import os
    path = tmp_path_factory.mktemp("cache")
    os.environ["DIFFSKETCH_CACHE"] = str(path)
    return path


def trainer(bb, pair, **cfg):
    return OneShotTrainer(bb, pair[0], pair[1], "a house and the sun", TrainConfig(**(FAST | cfg)), clip=tiny_clip(),
                          lpips_model=load_lpips())


# ------------------------------------------------------------------ generator

def test_every_generator_parameter_gets_a_gradient(tiny_backbone, pair):
    bb = tiny_backbone
    ex = FeatureExtractor(bb, timesteps=(61, 501))
    photo = torch.rand(1, 3, 128, 128) * 2 - 1
    feats = ex.extract(photo, bb.encode_prompt("x"), bb.encode_prompt(""))
    gen = generator_for(bb, ex.timesteps)
    out = gen(feats)
    assert out.shape == (1, 1, 128, 128) and 0 <= out.min() and out.max() <= 1
    (out * torch.rand_like(out)).sum().backward()
    silent = [n for n, p in gen.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not silent, f"parameters with no gradient: {silent}"
    registered = {id(p) for p in gen.parameters()}
    for name, module in gen.named_modules():  # nothing hidden in plain lists
        for p in module.parameters(recurse=False):
            assert id(p) in registered, name
    assert gen.level2.mixing.numel() == 3 * 2 + 1  # 3 layers x 2 timesteps + the level-1 slot


def test_sd15_generator_matches_reference_widths():
    from diffsketch_core.style.generator import SketchGenerator

    with torch.device("meta"):
        gen = SketchGenerator(unet_taps=tuple(f"t{i}" for i in range(12)), vae_taps=tuple(f"v{i}" for i in range(14)),
                              timesteps=tuple(range(13)))
    assert gen.level1.mixing.numel() == 9 * 13 and gen.level2.mixing.numel() == 3 * 13 + 1
    assert gen.fuse[0].block[0].in_channels == 768 + 5 * 16  # [uncond, cond] x 384 + y0..y4
    assert gen.final[0][0].in_channels == 64 + 3 * 8 + 3


# ------------------------------------------------------------------ CDST

def test_cdst_weights_follow_the_formula():
    assert cdst_weight(0, 1000) == 1.0
    assert cdst_weight(500, 1000) == pytest.approx(0.5)
    assert cdst_weight(100, 1000) == pytest.approx(np.sqrt(0.9) / (np.sqrt(0.9) + np.sqrt(0.1)))
    assert cdst_weight(1000, 1000) == 0.0 and cdst_weight(1100, 1000) == 0.0


def test_shipped_captions_are_many_and_varied():
    caps = read_captions()
    assert len(caps) >= 1000 and len(set(caps)) == len(caps)
    assert len({c.split(" ")[-1] for c in caps}) > 30


def test_prior_samples_have_text_embedding_shape(tiny_backbone, cache):
    prior = fit_prior(tiny_backbone, read_captions()[:200], n_components=32)
    assert prior.components.shape == (32, 77 * 16)
    s = prior.sample(3, torch.Generator().manual_seed(0))
    assert s.shape == (3, 77, 16) and torch.isfinite(s).all()
    example = torch.zeros(77, 16)
    cond = CDSTConditions(prior, example, horizon=10)
    assert torch.equal(cond(0), example[None])  # i = 0: the example's own condition
    assert not torch.allclose(cond(10), example[None])
    prior.save(cache / "p.safetensors")
    again = ConditionPrior.load(cache / "p.safetensors")
    assert torch.equal(again.components, prior.components) and again.shape == prior.shape


# ------------------------------------------------------------------ losses

def test_directional_losses_zero_for_identical_and_positive_otherwise():
    a = torch.nn.functional.normalize(torch.randn(2, 16), dim=-1)
    assert direction_loss(a - a, a - a) == 0
    assert direction_loss(a, a) == pytest.approx(0, abs=1e-6)
    assert direction_loss(a, -a) == pytest.approx(2, abs=1e-5)
    clip = tiny_clip()
    loss = DiffSketchLoss(clip, None)
    s, i = torch.rand(1, 1, 64, 64), torch.rand(1, 3, 64, 64)
    e_s, e_i = loss.embed_example(s, i)
    same = loss(s, s, e_s, e_i, s, i)
    assert same["across"] == pytest.approx(0, abs=1e-5) and same["within"] == 0
    other = loss(s, s, e_s, e_i, torch.rand(1, 1, 64, 64), torch.rand(1, 3, 64, 64))
    assert other["across"] > 0 and other["within"] > 0


def test_clip_embeddings_are_unit_length_and_differentiable():
    clip = tiny_clip()
    x = torch.rand(2, 1, 50, 70, requires_grad=True)
    e = clip(x)
    assert torch.allclose(e.norm(dim=-1), torch.ones(2), atol=1e-5)
    e.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@requires_shared
def test_lpips_alex_loads_offline_from_weights_dir():
    lp = load_lpips()
    a = torch.rand(1, 3, 64, 64) * 2 - 1
    assert float(lp(a, a).mean()) == pytest.approx(0, abs=1e-6)
    assert float(lp(a, -a).mean()) > 0.1


def test_missing_clip_offline_says_what_to_set(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError, match="DIFFSKETCH_CLIP_MODEL"):
        load_clip("openai/clip-vit-base-patch32")


# ------------------------------------------------------------------ training and inference

@requires_shared
def test_training_lowers_the_example_reconstruction_loss(tiny_backbone, pair, cache):
    torch.manual_seed(0)
    t = trainer(tiny_backbone, pair, iterations=20, lr=3e-3)
    before = t.reconstruction_loss()
    events = []
    t.run(events.append)
    after = t.reconstruction_loss()
    assert after < 0.8 * before
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("preview") == 4
    assert events[-2].preview["example"].shape == (128, 128)


@requires_shared
def test_cancel_stops_within_one_iteration(tiny_backbone, pair, cache):
    t = trainer(tiny_backbone, pair, iterations=50)
    stop = threading.Event()

    def on_event(e):
        if e.iteration == 3:
            stop.set()

    t.run(on_event, stop)
    assert t.iteration == 3


@requires_shared
def test_style_save_load_reproduces_outputs_and_sizes(tiny_backbone, pair, cache, tmp_path):
    t = trainer(tiny_backbone, pair, iterations=2)
    style = t.run()
    style.save(tmp_path / "style")
    loaded = load_style(tmp_path / "style", tiny_backbone)
    photo = Image.new("RGB", (97, 61), (120, 40, 200))
    a = PhotoToSketch(style, tiny_backbone)(photo).sketch
    b = PhotoToSketch(loaded, tiny_backbone)(photo).sketch
    assert a.size == (97, 61) and np.array_equal(np.asarray(a), np.asarray(b))
    tall = PhotoToSketch(loaded, tiny_backbone)(Image.new("RGB", (33, 150), "white")).sketch
    assert tall.size == (33, 150)


def test_foreign_or_mismatched_styles_are_refused(tiny_backbone, tmp_path):
    with pytest.raises(BadInputError, match="not a DiffSketch style"):
        load_style(tmp_path, tiny_backbone)
    gen = generator_for(tiny_backbone, (61,))
    gen.register_to_config(backbone=dict(tiny_backbone.fingerprint, block_out_channels=[320, 640, 1280, 1280],
                                         source="CompVis/stable-diffusion-v1-4"))
    from diffsketch_core.style.store import Style

    Style(gen, "", 128).save(tmp_path / "other")
    with pytest.raises(BadInputError, match="different backbone.*stable-diffusion"):
        load_style(tmp_path / "other", tiny_backbone)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "style.json").write_text('{"format": "something-else"}')
    (tmp_path / "bad" / "config.json").write_text("{}")
    with pytest.raises(BadInputError, match="not a DiffSketch style"):
        load_style(tmp_path / "bad", tiny_backbone)


@pytest.mark.parametrize("sketch, match", [
    (Image.new("L", (128, 128), 255), "blank"), (Image.new("L", (128, 128), 0), "all black")])
def test_blank_or_black_sketch_is_refused(tiny_backbone, pair, sketch, match):
    with pytest.raises(BadInputError, match=match):
        OneShotTrainer(tiny_backbone, pair[0], sketch, config=TrainConfig(**FAST), clip=tiny_clip(), lpips_model=None)


def test_small_photo_is_refused(tiny_backbone, pair):
    with pytest.raises(BadInputError, match="at least 64"):
        OneShotTrainer(tiny_backbone, pair[0].resize((40, 40)), pair[1], config=TrainConfig(**FAST),
                       clip=tiny_clip(), lpips_model=None)


@requires_shared
def test_mismatched_coloured_sketch_is_converted_with_notes(tiny_backbone, pair, cache):
    rgba = Image.new("RGBA", (64, 80), (0, 0, 0, 0))
    ImageDraw.Draw(rgba).line([0, 0, 63, 79], fill=(200, 30, 30, 255), width=3)
    t = OneShotTrainer(tiny_backbone, pair[0], rgba, config=TrainConfig(**FAST), clip=tiny_clip(), lpips_model=load_lpips())
    assert any("resized" in n for n in t.notes) and any("Transparent" in n for n in t.notes)
    assert t.target.shape == (1, 1, 128, 128) and t.target.min() < 0.7 and t.target.max() == pytest.approx(1.0)


def _run(*args):
    import subprocess
    import sys

    from conftest import ROOT
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


@requires_shared
def test_training_and_photo2sketch_clis(tmp_path, pair):
    pair[0].save(tmp_path / "photo.png")
    pair[1].save(tmp_path / "sketch.png")
    res = _run("diffsketch_core.style.training", "--photo", str(tmp_path / "photo.png"), "--sketch", str(tmp_path / "sketch.png"),
               "--out", str(tmp_path / "style"), "--backbone", "tiny", "--clip", "tiny", "--iterations", "2",
               "--sample-steps", "2", "--gen-batch", "2")
    assert res.returncode == 0, res.stderr
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (90, 70), "red").save(photos / "a.png")
    (photos / "broken.jpg").write_bytes(b"nope")
    res = _run("diffsketch_core.style.photo2sketch", "--style", str(tmp_path / "style"), "--backbone", "tiny",
               str(photos), str(tmp_path / "out"))
    assert res.returncode == 2 and "broken.jpg" in res.stderr  # one bad photo reported, the rest done
    assert Image.open(tmp_path / "out" / "a.png").size == (90, 70)


def test_training_cli_offline_without_sd_weights(tmp_path, pair):
    pair[0].save(tmp_path / "photo.png")
    res = _run("diffsketch_core.style.training", "--photo", str(tmp_path / "photo.png"), "--sketch", str(tmp_path / "photo.png"),
               "--out", str(tmp_path / "style"), "--backbone", "CompVis/stable-diffusion-v1-4")
    assert res.returncode == 2 and "DIFFSKETCH_SD_MODEL" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("kw, said", [
    (dict(iterations=0), "iterations must be at least 1"), (dict(resolution=100_000), "multiple of 8 from 64"),
    (dict(resolution=100), "multiple of 8 from 64"), (dict(lr=0.0), "lr must be above 0"),
    (dict(sample_steps=0), "must be at least 1"), (dict(extra_seeds=-1), "must not be negative"),
])
def test_training_settings_are_checked_when_made(kw, said):
    with pytest.raises(BadInputError, match=f"Training settings: .*{said}"):
        TrainConfig(**kw)


def test_training_cli_says_bad_settings_before_loading_sd(capsys):
    from diffsketch_core.style import training

    assert training.main(["--photo", "x.png", "--sketch", "y.png", "--out", "o", "--iterations", "0"]) == 2
    assert "error: Training settings: iterations must be at least 1" in capsys.readouterr().err
