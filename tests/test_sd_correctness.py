"""Correctness of the SD style path where random weights hide bugs (issue 19): every tap is what it claims to be,
training and inference condition a photo identically, sketch polarity, independent noise streams, old styles."""

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter

from diffsketch_core.diffusion import features as features_module
from diffsketch_core.diffusion import sampling
from diffsketch_core.diffusion.features import FeatureExtractor, decoder_taps, vae_decoder_taps
from diffsketch_core.errors import BadInputError
from diffsketch_core.perceptual import tiny_clip
from diffsketch_core.style.conditions import fit_prior, read_captions
from diffsketch_core.style.losses import LossWeights
from diffsketch_core.style.photo2sketch import PhotoToSketch
from diffsketch_core.style.sketches import guess_polarity, load_sketch
from diffsketch_core.style.store import load_style
from diffsketch_core.style.training import DEFAULT_CAPTION, OneShotTrainer, TrainConfig, _to_uint8

FAST = dict(sample_steps=2, gen_batch=2, preview_every=100, timesteps=(61, 501), weights=LossWeights(lpips=0.0),
            lr=3e-3)


@pytest.fixture(scope="module")
def prior(tiny_backbone):
    return fit_prior(tiny_backbone, read_captions()[:60], n_components=8)


def make_trainer(bb, pair, prior, caption="a house and the sun", **cfg):
    return OneShotTrainer(bb, pair[0], pair[1], caption, TrainConfig(**(FAST | cfg)), clip=tiny_clip(),
                          lpips_model=None, prior=prior)


# ------------------------------------------------------------------ every tap against an independent hook

def _hooked(model, names, run):
    """Outputs of plain forward hooks on the named modules (what a tap claims to be, computed another way)."""
    seen, handles = {}, []
    for n in names:
        handles.append(model.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: seen.setdefault(n, o)))
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return seen


def test_every_vae_tap_is_the_full_resnet_output(tiny_backbone):
    bb = tiny_backbone
    ex = FeatureExtractor(bb)
    z0 = ex.encode(torch.rand(1, 3, 128, 128) * 2 - 1)
    names = vae_decoder_taps(bb.vae)
    outputs = _hooked(bb.vae, names, lambda: bb.vae.decode(z0 / bb.scaling_factor))
    branches = _hooked(bb.vae, [f"{n}.conv2" for n in names], lambda: bb.vae.decode(z0 / bb.scaling_factor))
    feats = ex.vae_features(z0)
    assert len(names) == 14
    for n in names:
        torch.testing.assert_close(feats.maps[n], outputs[n])
        assert not torch.allclose(feats.maps[n], branches[f"{n}.conv2"], atol=1e-3), f"{n} is the residual branch"


def test_every_unet_tap_is_the_residual_branch(tiny_backbone):
    bb = tiny_backbone
    ex = FeatureExtractor(bb, timesteps=(321,))
    z0 = ex.encode(torch.rand(1, 3, 128, 128) * 2 - 1)
    cond = bb.encode_prompt("a cat")
    names = decoder_taps(bb.unet)
    noise = torch.randn(1, 1, *z0.shape[1:], generator=torch.Generator().manual_seed(0))
    x_t = bb.scheduler.add_noise(z0, noise[:, 0], torch.tensor([321]))
    branches = _hooked(bb.unet, [f"{n}.conv2" for n in names],
                       lambda: bb.unet(x_t, torch.tensor([321]), encoder_hidden_states=cond))
    feats = ex.unet_features(z0, cond, noise=noise)
    for n in names:
        torch.testing.assert_close(feats.maps[n][:, 0, 0], branches[f"{n}.conv2"], atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------ train/inference parity

@pytest.mark.parametrize("caption", ["a house and the sun", ""])
def test_style_applied_to_its_photo_reproduces_the_trainer(tiny_backbone, pair, prior, tmp_path, caption):
    t = make_trainer(tiny_backbone, pair, prior, caption=caption, iterations=2)
    style = t.run()
    t.generator.eval()
    with torch.no_grad():
        expected = _to_uint8(t.generator(t.example))
    style.save(tmp_path / "s")
    info = json.loads((tmp_path / "s" / "style.json").read_text())
    assert info["seed"] == 50 and info["caption"] == (caption or DEFAULT_CAPTION)
    got = np.asarray(PhotoToSketch(load_style(tmp_path / "s", tiny_backbone), tiny_backbone)(pair[0]).sketch)
    assert np.array_equal(got, expected)
    if not caption:
        assert any(DEFAULT_CAPTION in n for n in t.notes)


def test_example_condition_is_never_the_unconditional_one(tiny_backbone, pair, prior):
    t = make_trainer(tiny_backbone, pair, prior, caption="   ", iterations=1)
    assert not torch.allclose(t.example_cond, t.uncond)


def test_inference_uses_the_recorded_seed(tiny_backbone, pair, prior, tmp_path):
    t = make_trainer(tiny_backbone, pair, prior, iterations=1, seed=7)
    t.run().save(tmp_path / "s")
    style = load_style(tmp_path / "s", tiny_backbone)
    own = np.asarray(PhotoToSketch(style, tiny_backbone)(pair[0]).sketch)
    as_7 = np.asarray(PhotoToSketch(style, tiny_backbone, seed=7)(pair[0]).sketch)
    as_50 = np.asarray(PhotoToSketch(style, tiny_backbone, seed=50)(pair[0]).sketch)
    assert np.array_equal(own, as_7) and not np.array_equal(own, as_50)


def test_example_clip_image_is_its_vae_reconstruction(tiny_backbone, pair, prior):
    t = make_trainer(tiny_backbone, pair, prior, iterations=1)
    _, e_i = t.loss.embed_example(t.target, (t.example.vae.rgb.clamp(-1, 1) + 1) / 2)
    torch.testing.assert_close(t.e_i_ex, e_i)


# ------------------------------------------------------------------ noise streams

def test_no_two_noises_of_a_training_coincide(tiny_backbone, pair, prior, monkeypatch):
    drawn = []
    real = sampling.initial_noise

    def recording(shape, seed, device, dtype):
        out = real(shape, seed, device, dtype)
        drawn.append(out.flatten())
        return out

    monkeypatch.setattr(sampling, "initial_noise", recording)
    monkeypatch.setattr(features_module, "initial_noise", recording)
    t = make_trainer(tiny_backbone, pair, prior, iterations=4)
    t.run()
    assert len(drawn) == 1 + 2 * 2  # the example's extraction; per block of 2 iterations x_T and extraction noise
    for i in range(len(drawn)):
        for j in range(i + 1, len(drawn)):
            n = min(len(drawn[i]), len(drawn[j]))
            assert not torch.equal(drawn[i][:n], drawn[j][:n]), (i, j)


def test_chunked_training_equals_one_run(tiny_backbone, pair, prior):
    torch.manual_seed(0)
    whole = make_trainer(tiny_backbone, pair, prior, iterations=3)
    whole.run()
    events = []
    torch.manual_seed(0)  # the same initial generator
    first = make_trainer(tiny_backbone, pair, prior, iterations=3)
    first.run(events.append, until=1)  # stops inside a CDST block of 2: the next call must redraw the same samples
    assert first.iteration == 1 and events[-1].kind == "paused"
    second = make_trainer(tiny_backbone, pair, prior, iterations=3)  # a fresh trainer, as in the next GPU call
    second.load_state_dict(first.state_dict())
    second.run(events.append)
    assert events[-1].kind == "done" and second.iteration == 3
    for (name, a), b in zip(whole.generator.state_dict().items(), second.generator.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


# ------------------------------------------------------------------ polarity

def _line_art(size=256):
    img = Image.new("L", (size, size), 255)
    d = ImageDraw.Draw(img)
    d.ellipse([40, 40, 200, 200], outline=0, width=3)
    d.line([20, 230, 230, 30], fill=0, width=2)
    return img


def _dark_tonal(size=256):
    """XDoG-like sketch of a dark photo: mostly ink, soft grey shading, paper only in a few highlights."""
    rng = np.random.default_rng(0)
    base = np.full((size, size), 40.0)
    yy, xx = np.mgrid[:size, :size]
    base += 60 * np.sin(xx / 13.0) * (yy > size // 2)
    for cx, cy, r in ((70, 80, 30), (180, 170, 40)):
        base[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = 255
    base += rng.normal(0, 8, base.shape)
    return Image.fromarray(base.clip(0, 255).astype(np.uint8), "L").filter(ImageFilter.GaussianBlur(1))


@pytest.mark.parametrize("make, invert", [
    (lambda: _line_art(), False),                                             # ordinary: dark lines, white paper
    (lambda: Image.eval(_line_art(), lambda v: 255 - v), True),               # white-on-black line art
    (_dark_tonal, False),                                                     # dark tonal sketch: not inverted
])
def test_polarity_guess(make, invert):
    grey = np.asarray(make(), np.float32)
    assert guess_polarity(grey).invert is invert, guess_polarity(grey).reason


def test_a_dark_frame_is_not_dark_paper():
    for width in (4, 40):  # a thin frame line, and a wide dark mount round the drawing
        img = _line_art()
        ImageDraw.Draw(img).rectangle([0, 0, 255, 255], outline=0, width=width)
        assert guess_polarity(np.asarray(img, np.float32)).invert is False, width


def test_invert_choice_overrules_the_guess():
    img = Image.eval(_line_art(), lambda v: 255 - v)
    auto, notes = load_sketch(img)
    assert auto.mean() > 0.9 and any("inverted" in n for n in notes)
    kept, _ = load_sketch(img, invert="no")
    assert kept.mean() < 0.1
    flipped, _ = load_sketch(_line_art(), invert="yes")
    assert flipped.mean() < 0.1
    with pytest.raises(BadInputError, match="auto, yes, no"):
        load_sketch(img, invert="maybe")


def test_dark_tonal_sketch_is_learned_as_drawn(tiny_backbone, pair, prior):
    tonal = _dark_tonal(128)
    t = OneShotTrainer(tiny_backbone, pair[0], tonal, "x", TrainConfig(**FAST), clip=tiny_clip(), lpips_model=None,
                       prior=prior)
    assert not t.sketch_inverted
    np.testing.assert_allclose(t.target[0, 0].numpy(), np.asarray(tonal, np.float32) / 255, atol=1 / 255)


# ------------------------------------------------------------------ old styles

def test_styles_with_the_old_vae_taps_are_refused(tiny_backbone, pair, prior, tmp_path):
    make_trainer(tiny_backbone, pair, prior, iterations=1).run().save(tmp_path / "s")
    info_path = tmp_path / "s" / "style.json"
    info = json.loads(info_path.read_text())
    assert info["version"] >= 2
    info["version"] = 1
    info_path.write_text(json.dumps(info))
    with pytest.raises(BadInputError, match="older version.*VAE-decoder features.*Train it again"):
        load_style(tmp_path / "s", tiny_backbone)


@pytest.mark.skipif(not __import__("conftest").SHARED.joinpath("weights").is_dir(), reason="needs ../shared/weights")
def test_training_cli_invert_flag_overrules_the_guess(tmp_path, pair):
    from diffsketch_core.style.training import main

    pair[0].save(tmp_path / "photo.png")
    Image.eval(pair[1], lambda v: 255 - v).save(tmp_path / "chalk.png")  # white lines on black
    common = ["--photo", str(tmp_path / "photo.png"), "--sketch", str(tmp_path / "chalk.png"), "--backbone", "tiny",
              "--clip", "tiny", "--iterations", "1", "--sample-steps", "1", "--gen-batch", "1", "--resolution", "64"]
    assert main(common + ["--out", str(tmp_path / "auto")]) == 0
    assert main(common + ["--out", str(tmp_path / "kept"), "--invert", "no"]) == 0
    assert json.loads((tmp_path / "auto" / "style.json").read_text())["sketch_inverted"] is True
    assert json.loads((tmp_path / "kept" / "style.json").read_text())["sketch_inverted"] is False
    assert main(common + ["--out", str(tmp_path / "x"), "--invert", "maybe"]) == 2
