"""Sketch -> picture (DiffSketching) on tiny random components: sketch guidance, ControlNet wiring, SDEdit start,
LoRA fine-tuning, and the bad inputs each get their sentence."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from conftest import ROOT, requires_shared
from diffsketch_core import settings
from diffsketch_core.errors import BadInputError, MissingWeightsError
from diffsketch_core.picture.controlnet import ZERO_INIT, load_controlnet
from diffsketch_core.picture.extractor import load_extractor
from diffsketch_core.picture.finetune import FinetuneConfig, Finetuner
from diffsketch_core.picture.lora import LoRA
from diffsketch_core.picture.sketch2image import PictureConfig, main, sketch_to_image
from diffsketch_core.picture.sketch_loss import photo_warning


@pytest.fixture
def sketch():
    img = Image.new("L", (128, 128), 255)
    d = ImageDraw.Draw(img)
    d.ellipse([30, 30, 100, 100], outline=0, width=3)
    d.line([20, 110, 110, 20], fill=0, width=3)
    return img


@pytest.fixture(scope="module")
def tiny_extractor():
    return load_extractor("tiny")


def _pixels(result):
    return np.stack([np.asarray(i) for i in result.images])


def test_guidance_lowers_the_sketch_loss_against_none(tiny_backbone, sketch, tiny_extractor):
    base = dict(prompt="a cat", steps=6, width=64, height=64, seed=3, guide_end=1.0)
    plain = sketch_to_image(tiny_backbone, sketch, PictureConfig(**base), extractor=tiny_extractor)
    guided = sketch_to_image(tiny_backbone, sketch, PictureConfig(**base, sketch_scale=3.0), extractor=tiny_extractor)
    assert guided.sketch_loss[0] < plain.sketch_loss[0] - 1e-3
    assert plain.cost.unet_calls == guided.cost.unet_calls == 6  # guidance costs no extra UNet pass
    assert (plain.cost.extractor_backwards, guided.cost.extractor_backwards) == (0, 6)
    assert guided.images[0].size == (64, 64) and guided.sketches[0].size == (64, 64)


@requires_shared
def test_hed_guidance_lowers_the_sketch_loss(tiny_backbone, sketch):
    hed = load_extractor("hed")
    base = dict(prompt="a cat", steps=3, width=64, height=64, guide_end=1.0)
    plain = sketch_to_image(tiny_backbone, sketch, PictureConfig(**base), extractor=hed)
    guided = sketch_to_image(tiny_backbone, sketch, PictureConfig(**base, sketch_scale=3.0), extractor=hed)
    assert guided.sketch_loss[0] < plain.sketch_loss[0]


def test_zero_init_controlnet_leaves_the_picture_unchanged_and_a_trained_one_does_not(tiny_backbone, sketch):
    cfg = PictureConfig(prompt="a cat", steps=3, width=64, height=64, count=2)
    plain = sketch_to_image(tiny_backbone, sketch, cfg)
    control = load_controlnet(tiny_backbone, ZERO_INIT)
    zero = sketch_to_image(tiny_backbone, sketch, cfg, controlnet=control)
    assert zero.cost.controlnet_calls == 3
    assert np.array_equal(_pixels(plain), _pixels(zero))
    with torch.no_grad():  # what training does to the zero convolutions: now the sketch reaches the UNet
        for conv in [*control.model.controlnet_down_blocks, control.model.controlnet_mid_block]:
            conv.weight.normal_(0, 0.5)
    moved = sketch_to_image(tiny_backbone, sketch, cfg, controlnet=control)
    assert not np.array_equal(_pixels(plain), _pixels(moved))


def test_strength_starts_from_the_sketch_part_way(tiny_backbone, sketch):
    full = sketch_to_image(tiny_backbone, sketch, PictureConfig(steps=8, width=64, height=64))
    half = sketch_to_image(tiny_backbone, sketch, PictureConfig(steps=8, width=64, height=64, strength=0.5))
    assert (full.cost.unet_calls, half.cost.unet_calls) == (8, 4)
    assert not np.array_equal(_pixels(full), _pixels(half))


def test_progress_and_cancel(tiny_backbone, sketch):
    events = []

    class StopAfterTwo:
        def is_set(self):
            return len(events) >= 2

    res = sketch_to_image(tiny_backbone, sketch, PictureConfig(steps=5, width=64, height=64), on_event=events.append,
                          cancel=StopAfterTwo())
    assert res.cancelled and not res.images and [e.step for e in events] == [1, 2]
    assert res.cost.unet_calls == 2


def test_finetune_loss_goes_down_and_its_lora_saves_and_loads(tiny_backbone, sketch, tiny_extractor, tmp_path):
    photo = Image.new("RGB", (64, 64), (200, 180, 90))
    ImageDraw.Draw(photo).ellipse([15, 15, 50, 50], fill=(40, 60, 160))
    cfg = FinetuneConfig("a ball", iterations=8, lr=1e-2, resolution=64, eval_draws=2)
    events = []
    res = Finetuner(tiny_backbone, [(sketch, photo)], cfg, tiny_extractor).run(events.append)
    assert res.eval_after < res.eval_before
    assert [e.iteration for e in events] == list(range(1, 9))
    path = res.lora.save(tmp_path / "lora.safetensors")
    back = LoRA.load(path)
    assert back.a.keys() == res.lora.a.keys() and back.rank == 4
    assert all(torch.equal(back.b[k], res.lora.b[k].detach()) for k in back.b)
    assert any(k.endswith("attn1.to_q") for k in back.a)
    pic = PictureConfig("a ball", steps=3, width=64, height=64)
    plain = sketch_to_image(tiny_backbone, sketch, pic)
    adapted = sketch_to_image(tiny_backbone, sketch, pic, lora=back)
    assert not np.array_equal(_pixels(plain), _pixels(adapted))
    assert np.array_equal(_pixels(plain), _pixels(sketch_to_image(tiny_backbone, sketch, pic)))  # UNet restored
    fresh = sketch_to_image(tiny_backbone, sketch, pic, lora=LoRA.fresh(tiny_backbone.unet))
    assert np.array_equal(_pixels(plain), _pixels(fresh))  # B = 0: a new LoRA changes nothing


def test_bad_inputs_get_a_sentence(tiny_backbone, sketch, tmp_path):
    cfg = PictureConfig(steps=1, width=64, height=64)
    with pytest.raises(BadInputError, match="blank"):
        sketch_to_image(tiny_backbone, Image.new("L", (64, 64), 255), cfg)
    with pytest.raises(BadInputError, match="No sketch"):
        sketch_to_image(tiny_backbone, None, cfg)
    with pytest.raises(BadInputError, match="extractor"):
        sketch_to_image(tiny_backbone, sketch, PictureConfig(steps=1, sketch_scale=1.0))
    for bad in (dict(cfg=-3.0), dict(lpips=-1.0)):
        with pytest.raises(BadInputError, match="cannot be negative"):
            sketch_to_image(tiny_backbone, sketch, PictureConfig(steps=1, **bad))
    res = sketch_to_image(tiny_backbone, sketch, PictureConfig(prompt="a very long prompt " * 10, steps=1, width=70, height=61))
    assert res.size == (72, 64) and res.images[0].size == (72, 64)
    assert any("rounded to 72x64" in n for n in res.notes)
    assert any("tokens long" in n and "cut" in n for n in res.notes)
    photo = ROOT / "assets" / "photos" / "coffee.png"
    res = sketch_to_image(tiny_backbone, photo, cfg)
    assert any("looks like a photo" in n for n in res.notes)


def test_photo_warning_spares_drawings(sketch):
    from diffsketch_core.extractors import extract_sketch

    photo = Image.open(ROOT / "assets" / "photos" / "chelsea.png").convert("RGB")
    assert photo_warning(photo)
    assert photo_warning(sketch.convert("RGB")) == []
    assert photo_warning(extract_sketch(photo, "xdog").image.convert("RGB")) == []


def test_missing_controlnet_names_the_setting(tiny_backbone, monkeypatch, tmp_path):
    monkeypatch.setenv(settings.CONTROLNET_ENV, str(tmp_path / "nowhere" / "controlnet"))
    with pytest.raises(MissingWeightsError, match=settings.CONTROLNET_ENV):
        load_controlnet(tiny_backbone)
    monkeypatch.setenv(settings.CONTROLNET_ENV, "nobody/no-such-controlnet")
    with pytest.raises(MissingWeightsError, match=f"{settings.CONTROLNET_ENV}.*--controlnet"):
        load_controlnet(tiny_backbone)


def test_cli_writes_pictures_and_refuses_bad_input(sketch, tmp_path, capsys):
    path = tmp_path / "s.png"
    sketch.save(path)
    out = tmp_path / "pic.png"
    assert main(["--sketch", str(path), "--out", str(out), "--backbone", "tiny", "--steps", "2", "--width", "64",
                 "--height", "64", "--extractor", "tiny", "--count", "2", "--controlnet", ZERO_INIT]) == 0
    assert (tmp_path / "pic-0.png").is_file() and (tmp_path / "pic-1.png").is_file()
    assert "2 ControlNet calls" in capsys.readouterr().out
    assert main(["--sketch", str(tmp_path / "missing.png"), "--out", str(out), "--backbone", "tiny"]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "python -m diffsketch_core.picture.sketch2image" in capsys.readouterr().out


def test_finetune_cli_help_and_bad_pair(tmp_path, capsys):
    from diffsketch_core.picture.finetune import main as finetune_main

    assert finetune_main(["--help"]) == 0
    assert finetune_main(["--pair", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--out", str(tmp_path / "l.safetensors"),
                          "--backbone", "tiny", "--extractor", "tiny"]) == 2
    assert "error:" in capsys.readouterr().err


def test_hand_over_from_the_stroke_tabs(tmp_path, sketch):
    import gradio as gr

    from ui import picture

    png = picture.canvas_png('[[[10, 10], [200, 300]], [[50, 400]]]', tmp_path / "c.png")
    drawn = np.asarray(Image.open(png))
    assert drawn.shape == (512, 512) and (drawn < 128).sum() > 300  # both strokes drawn, the dot too
    assert picture.canvas_png("[]", tmp_path / "e.png") is None
    after = np.asarray(sketch)
    assert picture.from_rectify(after, None, "[]")[0] is after  # the rectified result wins
    assert picture.from_rectify(None, "up.png", '[[[1, 1], [9, 9]]]')[0] == "up.png"
    with pytest.raises(gr.Error, match="Nothing to send"):
        picture.from_rectify(None, None, "[]")
    assert picture.from_strokes([("a.png", None), ("b.png", None)])[0] == "a.png"
    with pytest.raises(gr.Error, match="Nothing to send"):
        picture.from_strokes([])


@pytest.mark.parametrize("value", ['"/etc/passwd"', '{"a": 1}', '[["x", "y"]]', "[[[1, 2]]" + "]" * 3, "[[[NaN, 1]]]"])
def test_hand_over_types_the_canvas_value(value, tmp_path):
    """The canvas value reaching the hand-over is typed like Rectify's: one sentence, never a file read."""
    import gradio as gr

    from ui import picture

    with pytest.raises(gr.Error) as err:
        picture.canvas_png(value, tmp_path / "c.png")
    assert str(err.value.message).strip() and "/etc" not in str(err.value.message)


@pytest.mark.parametrize("source", ["tiny-sd2", "tiny-sdxl"])
def test_finetune_runs_on_sd2_and_sdxl_with_their_own_targets(source, sketch, tiny_extractor):
    """SD 2.x (768) predicts v, SDXL needs its pooled embedding and time ids: the fine-tuner's denoising loss is on
    what the UNet predicts, and its UNet call carries the added conditions."""
    from diffsketch_core.diffusion.backbone import load_backbone

    bb = load_backbone(source, device="cpu")
    photo = Image.new("RGB", (64, 64), (200, 180, 90))
    tuner = Finetuner(bb, [(sketch, photo)], FinetuneConfig("a ball", iterations=2, resolution=64, eval_draws=1),
                      tiny_extractor)
    pair, t = tuner.pairs[0], torch.tensor([500])
    noise = torch.randn(pair.latent.shape, generator=torch.Generator().manual_seed(0))
    a = bb.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    zt = a.sqrt() * pair.latent + (1 - a).sqrt() * noise
    with torch.no_grad():
        parts = tuner.losses(pair, t, noise)  # a fresh LoRA is zero: the UNet as loaded
        out = bb.unet(zt, t, **bb.unet_kwargs(tuner.cond, tuple(zt.shape[-2:]))).sample
    target = bb.scheduler.get_velocity(pair.latent, noise, t) if source == "tiny-sd2" else noise
    assert bb.prediction_type == ("v_prediction" if source == "tiny-sd2" else "epsilon")
    assert torch.allclose(parts["denoise"], torch.nn.functional.mse_loss(out, target), atol=1e-6)
    res = tuner.run()
    assert res.iterations == 2 and np.isfinite(res.eval_after)
