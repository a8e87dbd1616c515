"""The CNN (VGG16-features) style path of issue 13: backbone, generator, one-shot trainer, styles, bad input."""

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from conftest import SHARED, requires_shared
from diffsketch_core.diffusion import cnn
from diffsketch_core.diffusion.cnn import load_cnn_backbone
from diffsketch_core.errors import BadInputError, MissingWeightsError
from diffsketch_core.style.cnn_generator import cnn_generator_for
from diffsketch_core.style.cnn_photo2sketch import CNNPhotoToSketch
from diffsketch_core.style.cnn_training import CNNOneShotTrainer, CNNTrainConfig
from diffsketch_core.style.store import load_style


@pytest.fixture(scope="module")
def tiny_cnn():
    return load_cnn_backbone(cnn.TINY_CNN, work_side=96)


def _card(size=(128, 96)):
    """A photo-like card and its line drawing (the shapes' outlines)."""
    photo = Image.new("RGB", size, (235, 230, 220))
    sketch = Image.new("L", size, 255)
    w, h = size
    for d, fill, width in ((ImageDraw.Draw(photo), (30, 40, 60), 0), (ImageDraw.Draw(sketch), None, 2)):
        box, disc = [w * 0.2, h * 0.25, w * 0.5, h * 0.7], [w * 0.6, h * 0.3, w * 0.9, h * 0.7]
        if width:
            d.rectangle(box, outline=0, width=width)
            d.ellipse(disc, outline=0, width=width)
        else:
            d.rectangle(box, fill=fill)
            d.ellipse(disc, fill=(150, 60, 40))
    return photo, sketch


def _config(**kw):
    return CNNTrainConfig(**({"iterations": 4, "bank": 4, "batch": 2, "lpips": 0.0, "preview_every": 2} | kw))


def test_backbone_taps_and_generator_shapes(tiny_cnn):
    x = torch.rand(2, 3, 64, 96)
    feats = tiny_cnn.extract(x)
    assert [tuple(f.shape[-2:]) for f in feats.values()] == [(64, 96), (32, 48), (16, 24), (8, 12), (4, 6)]
    assert tiny_cnn.is_demo and tiny_cnn.fingerprint["weights"] == "random"
    gen = cnn_generator_for(tiny_cnn)
    out = gen(feats, torch.rand(2, 3, 128, 192))  # drawn at twice the size the backbone read
    assert out.shape == (2, 1, 128, 192) and 0 <= out.min() and out.max() <= 1
    assert tiny_cnn.work_size(481, 321) == (96, 64)


def test_training_learns_the_example(tiny_cnn):
    photo, sketch = _card()
    trainer = CNNOneShotTrainer(tiny_cnn, photo, sketch, _config(iterations=40, lr=5e-3, bank=8))
    before = trainer.example_loss()
    trainer.run()
    after = trainer.example_loss()
    assert after < 0.7 * before, (before, after)


def test_events_previews_and_stop(tiny_cnn):
    photo, sketch = _card()
    trainer = CNNOneShotTrainer(tiny_cnn, photo, sketch, _config(iterations=50), unlabeled=[photo.transpose(Image.Transpose.ROTATE_90)])
    stop, events = threading.Event(), []

    def on_event(e):
        events.append(e)
        if e.kind == "preview":
            stop.set()

    style = trainer.run(on_event, stop)
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "cancelled" and "preview" in kinds
    assert trainer.iteration == 2 and style.meta["iterations"] == 2
    preview = next(e.preview for e in events if e.preview)
    assert preview["example"].shape == (64, 96) and preview["sample"].shape == (96, 64)
    assert "consistency" in events[1].losses


def test_unlabeled_photos_teach_a_sketch_that_survives_a_mirror(tiny_cnn, tmp_path):
    """The consistency view of an unlabeled photo is its mirrored copy (colour jitter aside), compared mirrored
    back; with LPIPS on, the term is perceptual (as L1 it pulled sparse styles to a blank page)."""
    from diffsketch_core.style.augment import AugmentConfig

    photo, sketch = _card()
    other = photo.transpose(Image.Transpose.ROTATE_180)

    def trained(weight):
        cfg = _config(iterations=30, lr=5e-3, consistency=weight, augment=AugmentConfig(jitter=0.0, blur=0.0))
        trainer = CNNOneShotTrainer(tiny_cnn, photo, sketch, cfg, unlabeled=[other])
        fa, a, fb, b = trainer.unlabeled[0]
        assert torch.equal(b, a.flip(-1))
        style = trainer.run()
        assert style.meta["unlabeled_photos"] == 1
        with torch.no_grad():  # how much the sketch of the photo and of its mirror image disagree
            return float((trainer.generator(fa, a) - trainer.generator(fb, b).flip(-1)).abs().mean()), trainer

    without, _ = trained(0.0)
    with_term, trainer = trained(1.0)
    assert with_term < 0.5 * without, (with_term, without)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    kept = CNNOneShotTrainer(tiny_cnn, photo, sketch, _config(iterations=1), unlabeled=[broken, other])
    assert len(kept.unlabeled) == 1 and any("extra photo was skipped" in n for n in kept.notes)
    fake = torch.nn.Module()
    fake.forward = lambda x, y: (x - y).pow(2).mean((1, 2, 3))
    trainer.lpips = fake
    x, y = torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8)
    assert float(trainer._distance(x, y)) == 4.0  # the perceptual distance, on 3-channel images in [-1, 1]


def test_reflected_borders_draw_no_frame_and_version_1_styles_are_refused(tiny_cnn, tmp_path):
    """A flat photo has no edges: with reflected borders in the backbone and the generator, nothing can tell the
    border from the middle, so no frame is drawn (zero padding could, and styles drew dark right/bottom lines).
    A style saved before (CPU style version 1, zero padding) is refused with a message, not loaded wrong."""
    import json

    from torch import nn

    flat = torch.full((1, 3, 96, 128), 0.5)
    gen = cnn_generator_for(tiny_cnn)
    with torch.no_grad():
        for p in gen.parameters():  # a trained-looking generator: no zero weights hiding the border
            p.add_(0.3 * torch.randn_like(p, generator=torch.Generator().manual_seed(0)))
        out = gen.eval()(tiny_cnn.extract(flat), flat)[0, 0]
        assert float(out.max() - out.min()) < 1e-5
        zeros = load_cnn_backbone(cnn.TINY_CNN, work_side=96, padding="zeros")
        for m in gen.modules():
            if isinstance(m, nn.Conv2d):
                m.padding_mode = "zeros"
        framed = gen(zeros.extract(flat), flat)[0, 0]
        assert float(framed.max() - framed.min()) > 1e-3
    assert tiny_cnn.fingerprint["padding"] == "reflect" and zeros.fingerprint["padding"] == "zeros"
    photo, sketch = _card()
    CNNOneShotTrainer(tiny_cnn, photo, sketch, _config(iterations=1)).run().save(tmp_path / "v1")
    config = json.loads((tmp_path / "v1" / "config.json").read_text())
    del config["version"]  # what version 1 wrote
    (tmp_path / "v1" / "config.json").write_text(json.dumps(config))
    with pytest.raises(BadInputError, match="older version .CPU style version 1.*Train it again"):
        load_style(tmp_path / "v1", tiny_cnn)


def test_style_round_trip_and_apply(tiny_cnn, tmp_path):
    photo, sketch = _card()
    style = CNNOneShotTrainer(tiny_cnn, photo, sketch, _config()).run()
    style.save(tmp_path / "s")
    loaded = load_style(tmp_path / "s", tiny_cnn)
    assert loaded.kind == "cnn" and type(loaded.generator).__name__ == "CNNSketchGenerator"
    a = CNNPhotoToSketch(style, tiny_cnn)(photo).sketch
    b = CNNPhotoToSketch(loaded, tiny_cnn)(photo).sketch
    assert a.size == photo.size and np.abs(np.asarray(a, float) - np.asarray(b, float)).max() <= 1


def test_onnx_runtime_draws_what_pytorch_draws(tiny_cnn, monkeypatch):
    from diffsketch_core import onnx_runtime
    from diffsketch_core.style.cnn_photo2sketch import _Apply

    photo, sketch = _card()
    model = CNNPhotoToSketch(CNNOneShotTrainer(tiny_cnn, photo, sketch, _config(iterations=2)).run(), tiny_cnn)
    run = model.runner()
    assert isinstance(run, onnx_runtime.OnnxModule)  # onnx and onnxruntime are in requirements.txt
    assert model.runner() is run  # exported once per thread count
    with torch.no_grad():
        for work, full in [((64, 48), (100, 75)), ((48, 64), (48, 64)), ((32, 32), (20, 20))]:  # free sizes
            w, f = torch.rand(1, 3, work[1], work[0]), torch.rand(1, 3, full[1], full[0])
            torch.testing.assert_close(run(w, f), _Apply(tiny_cnn, model.style.generator)(w, f), atol=1e-5, rtol=0)
    monkeypatch.setenv(onnx_runtime.RUNTIME_ENV, "torch")
    assert isinstance(CNNPhotoToSketch(model.style, tiny_cnn).runner(), _Apply)


def test_mirror_averaged_apply_is_the_mean_of_both_passes(tiny_cnn, monkeypatch):
    from diffsketch_core import mirror, onnx_runtime
    from diffsketch_core.style.cnn_photo2sketch import _Apply

    photo, sketch = _card()
    style = CNNOneShotTrainer(tiny_cnn, photo, sketch, _config(iterations=2)).run()
    plain = _Apply(tiny_cnn, style.generator).eval()
    w, f = torch.rand(1, 3, 48, 64), torch.rand(1, 3, 75, 100)
    with torch.no_grad():
        ref = (plain(w, f) + plain(w.flip(-1), f.flip(-1)).flip(-1)) / 2
        for runtime in ("onnx", "torch"):
            if runtime == "torch":
                monkeypatch.setenv(onnx_runtime.RUNTIME_ENV, "torch")
            model = CNNPhotoToSketch(style, tiny_cnn, mirror=True)
            torch.testing.assert_close(mirror.average(model.runner(), w, f), ref, atol=1e-5, rtol=0)
    a = np.asarray(model(photo).sketch, float)
    b = np.asarray(model(photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)).sketch, float)
    assert np.abs(a - b[:, ::-1]).max() <= 1  # a mirrored photo gets the mirrored sketch
    single = model.with_mirror(False)
    assert single._runners is model._runners and model.with_mirror(True) is model  # one graph for both
    assert np.abs(np.asarray(single(photo).sketch, float) - a).max() > 0


def test_a_network_onnx_cannot_export_runs_in_pytorch_with_a_warning():
    from diffsketch_core import onnx_runtime

    class Branchy(torch.nn.Module):
        def forward(self, x):
            return x.numpy()  # leaves the graph: not traceable

    with pytest.warns(UserWarning, match="ONNX Runtime could not run the test net .*using PyTorch"):
        assert onnx_runtime.try_onnx(Branchy(), [torch.zeros(1, 3, 8, 8)], ["x"], {}, 1, "the test net") is None


def test_style_from_the_other_backbone_is_refused(tiny_cnn, tiny_backbone, tmp_path):
    from diffsketch_core.diffusion.features import DEFAULT_TIMESTEPS
    from diffsketch_core.style.archive import pack_style, unpack_style
    from diffsketch_core.style.generator import generator_for
    from diffsketch_core.style.store import Style

    photo, sketch = _card()
    CNNOneShotTrainer(tiny_cnn, photo, sketch, _config(iterations=1)).run().save(tmp_path / "cnn")
    unpacked = unpack_style(pack_style(tmp_path / "cnn", tmp_path / "cnn.zip"), tmp_path / "up")
    with pytest.raises(BadInputError, match="CPU: VGG16 features backbone, but the Stable Diffusion"):
        load_style(unpacked, tiny_backbone)
    Style(generator_for(tiny_backbone, DEFAULT_TIMESTEPS), "", 128).save(tmp_path / "sd")
    with pytest.raises(BadInputError, match="Stable Diffusion backbone, but the CPU: VGG16"):
        load_style(tmp_path / "sd", tiny_cnn)
    other = load_cnn_backbone(cnn.TINY_CNN, work_side=96)
    other.weights = "imagenet"  # same shapes, other weights: refused too
    with pytest.raises(BadInputError, match="differing in weights"):
        load_style(tmp_path / "cnn", other)
    zeros = load_cnn_backbone(cnn.TINY_CNN, work_side=96, padding="zeros")  # same weights, other borders: refused
    with pytest.raises(BadInputError, match="differing in padding"):
        load_style(tmp_path / "cnn", zeros)


def test_bad_pairs(tiny_cnn):
    photo, sketch = _card()
    with pytest.raises(BadInputError, match="blank"):
        CNNOneShotTrainer(tiny_cnn, photo, Image.new("L", photo.size, 255), _config())
    dot = Image.new("L", photo.size, 255)
    ImageDraw.Draw(dot).point((5, 5), 0)
    ImageDraw.Draw(dot).point((50, 50), 200)
    with pytest.raises(BadInputError, match="almost blank"):
        CNNOneShotTrainer(tiny_cnn, photo, dot, _config())
    with pytest.raises(BadInputError, match="at least 64"):
        CNNOneShotTrainer(tiny_cnn, photo.resize((60, 40)), sketch.resize((60, 40)), _config())
    as_photo = CNNOneShotTrainer(tiny_cnn, photo, photo, _config(iterations=1))
    assert any("looks like a photo" in n for n in as_photo.notes)
    wide = CNNOneShotTrainer(tiny_cnn, photo, sketch.resize((200, 90)), _config(iterations=1))
    assert any("different shapes" in n and "stretched" in n for n in wide.notes)
    assert not any("looks like a photo" in n for n in wide.notes)
    huge = CNNOneShotTrainer(tiny_cnn, photo.resize((3000, 2250)), sketch.resize((3000, 2250)), _config(iterations=1))
    assert max(huge.photo.size) == 96  # read at the work size whatever the upload


def test_offline_vgg16_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("DIFFSKETCH_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(MissingWeightsError, match="DIFFSKETCH_WEIGHTS_DIR"):
        load_cnn_backbone("vgg16")
    assert "vgg16_features_fp16.safetensors" in cnn.needs()
    monkeypatch.delenv("DIFFSKETCH_WEIGHTS_DIR")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(MissingWeightsError, match="offline"):
        load_cnn_backbone("vgg16")
    assert cnn.needs() is not None


@requires_shared
def test_pretrained_vgg16_from_the_weights_folder():
    from safetensors.torch import load_file

    bb = load_cnn_backbone("vgg16")
    assert bb.fingerprint["weights"] == "imagenet" and not bb.is_demo and cnn.needs() is None
    state = load_file(str(SHARED / "weights" / "vgg16" / "vgg16_features_fp16.safetensors"))
    assert torch.equal(bb.net[28].weight, state["features.28.weight"].float())
    assert bb.fingerprint["channels"] == [64, 128, 256, 512, 512]
    # ImageNet features respond to structure: an edge excites relu3 more than a flat grey card does
    flat = torch.full((1, 3, 64, 64), 0.5)
    edge = flat.clone()
    edge[..., 32:] = 0.9
    assert bb.extract(edge, ("relu3",))["relu3"].abs().mean() > bb.extract(flat, ("relu3",))["relu3"].abs().mean()


@requires_shared
def test_app_trains_a_cpu_style_and_applies_it(photo_path, tmp_path):
    """The issue's 'done when' flow against the app's functions: load the CPU backbone, train a few iterations on
    the real VGG16 from the Style tab, see a preview, apply the style in Photo -> Sketch, refuse it on SD."""
    import shutil
    import uuid
    from types import SimpleNamespace

    import gradio as gr

    from diffsketch_core.extractors import extract_sketch
    from ui import backbone_panel, cnn_style, photo, style

    def uploaded(path):
        target = Path(gr.utils.get_upload_folder()) / "test-uploads" / uuid.uuid4().hex / Path(path).name
        target.parent.mkdir(parents=True)
        shutil.copy(path, target)
        return str(target)

    small = Image.open(photo_path).convert("RGB").resize((192, 128))
    small.save(tmp_path / "photo.png")
    extract_sketch(small, "xdog").image.save(tmp_path / "sketch.png")
    state, status, banner, _ = backbone_panel.load_backbone_ui(cnn_style.CPU_SOURCE, False)
    assert state == "vgg16" and "CPU: VGG16 features" in banner
    who = SimpleNamespace(session_hash="cpu-style")
    outs = list(style.train_style(uploaded(tmp_path / "photo.png"), uploaded(tmp_path / "sketch.png"), "", 3,
                                  state, who))
    # a preview was shown, at the size the backbone reads the photo (long side 256)
    assert any(isinstance(o[1], np.ndarray) and o[1].shape == (176, 256) for o in outs)
    msg, _, _, zipped, folder, _ = outs[-1]
    assert "Training done after 3 iterations" in msg and zipped.endswith(".zip")
    # it started from the shipped sketch prior, and says so; unticked, it starts from scratch
    assert any("Starting from the sketch prior" in o[0] for o in outs if isinstance(o[0], str))
    assert json.loads((Path(folder) / "style.json").read_text())["prior"] == "cnn_sketch_prior"
    small.rotate(180).save(tmp_path / "more.png")  # an extra photo without a sketch (the consistency term)
    plain = list(style.train_style(uploaded(tmp_path / "photo.png"), uploaded(tmp_path / "sketch.png"), "", 2,
                                   state, who, prior=False, more_photos=[uploaded(tmp_path / "more.png")], runs=2))
    info = json.loads((Path(plain[-1][4]) / "style.json").read_text())
    assert info["prior"] is None and info["unlabeled_photos"] == 1
    assert info["runs_averaged"] == 2 and "Training done after 4 iterations" in plain[-1][0]  # 2 runs of 2, averaged
    assert any("1 extra photo(s)" in o[0] and "2 runs of 2 iterations" in o[0] for o in plain if isinstance(o[0], str))
    with pytest.raises(gr.Error, match="Training runs averaged must be a whole number from 1 to 5"):
        next(style.train_style(uploaded(tmp_path / "photo.png"), uploaded(tmp_path / "sketch.png"), "", 2, state,
                               who, runs=7))
    with pytest.raises(gr.Error, match="Each extra photo must be a file uploaded through the app"):
        next(style.train_style(uploaded(tmp_path / "photo.png"), uploaded(tmp_path / "sketch.png"), "", 2, state,
                               who, more_photos=["/etc/passwd"]))
    gallery, _, note = photo.photos_to_sketches([uploaded(tmp_path / "photo.png")], "512 px (long side)", 0, 0.0,
                                                False, folder, state, who)
    with Image.open(gallery[0]) as out:
        assert out.size == (512, 341) and np.asarray(out).std() > 0
        single = np.asarray(out, float)
    gallery, _, _ = photo.photos_to_sketches([uploaded(tmp_path / "photo.png")], "512 px (long side)", 0, 0.0,
                                             False, folder, state, who, mirror=True)
    with Image.open(gallery[0]) as out:  # the mirror-averaged sketch: the same size, not the same pixels
        assert out.size == (512, 341) and np.abs(np.asarray(out, float) - single).mean() > 0.1
    assert cnn_style.model(folder, state, True).mirror and not cnn_style.model(folder, state).mirror
    assert cnn_style.model(folder, state, True)._runners is cnn_style.model(folder, state)._runners  # one export
    with pytest.raises(gr.Error, match="Mirror-averaged must be true or false"):
        photo.photos_to_sketches([uploaded(tmp_path / "photo.png")], "Same as photo", 0, 0.0, False, folder, state,
                                 who, mirror="yes")
    kept = cnn_style.model(folder, state)
    assert cnn_style.model(folder, state) is kept  # the next click reuses the exported graph
    weights = next(Path(folder).glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert cnn_style.model(folder, state) is not kept  # saved again: loaded again
    with pytest.raises(gr.Error, match="CPU: VGG16 features backbone, but the Stable Diffusion"):
        style.upload_style(uploaded(zipped), "tiny", who)


def test_cli_trains_and_applies_on_the_tiny_cnn(tmp_path, capsys):
    from diffsketch_core.style import cnn_photo2sketch, cnn_training

    photo, sketch = _card()
    photo.save(tmp_path / "p.png")
    sketch.save(tmp_path / "s.png")
    Image.new("L", (128, 96), 255).save(tmp_path / "blank.png")
    assert cnn_training.main(["--photo", str(tmp_path / "p.png"), "--sketch", str(tmp_path / "blank.png"),
                              "--out", str(tmp_path / "x"), "--backbone", "tiny-cnn"]) == 2
    assert "error: The sketch is blank" in capsys.readouterr().err
    assert cnn_training.main(["--photo", str(tmp_path / "p.png"), "--sketch", str(tmp_path / "s.png"),
                              "--out", str(tmp_path / "style"), "--backbone", "tiny-cnn", "--iterations", "2"]) == 0
    assert cnn_photo2sketch.main(["--style", str(tmp_path / "style"), "--backbone", "tiny-cnn",
                                  str(tmp_path / "p.png"), str(tmp_path / "out")]) == 0
    with Image.open(tmp_path / "out" / "p.png") as out:
        assert out.size == (128, 96)
        single = np.asarray(out, float)
    assert cnn_photo2sketch.main(["--style", str(tmp_path / "style"), "--backbone", "tiny-cnn", "--mirror",
                                  str(tmp_path / "p.png"), str(tmp_path / "mirrored")]) == 0
    with Image.open(tmp_path / "mirrored" / "p.png") as out:
        assert out.size == (128, 96) and np.abs(np.asarray(out, float) - single).max() > 0
    assert cnn_photo2sketch.main(["--style", str(tmp_path / "style"), "--backbone", "vgg16-random",
                                  str(tmp_path / "p.png"), str(tmp_path / "out")]) == 2  # other backbone: refused
    assert "differing in" in capsys.readouterr().err


def test_cli_checks_the_style_before_loading_a_backbone_and_distils_a_cpu_style(tmp_path, capsys, monkeypatch):
    from diffsketch_core.style import cnn_photo2sketch, cnn_training, distill

    photo, sketch = _card()
    photo.save(tmp_path / "p.png")
    sketch.save(tmp_path / "s.png")
    with monkeypatch.context() as m:
        m.setenv("DIFFSKETCH_WEIGHTS_DIR", str(tmp_path))  # no VGG16 here: the style is said first
        assert cnn_photo2sketch.main(["--style", str(tmp_path / "nope"), str(tmp_path / "p.png"),
                                      str(tmp_path / "out")]) == 2
    assert "is not a DiffSketch style" in capsys.readouterr().err
    assert cnn_training.main(["--photo", str(tmp_path / "p.png"), "--sketch", str(tmp_path / "s.png"),
                              "--out", str(tmp_path / "style"), "--backbone", "tiny-cnn", "--iterations", "2"]) == 0
    photos = tmp_path / "photos"
    photos.mkdir()
    photo.save(photos / "a.png")
    photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(photos / "b.png")
    assert distill.main(["--photos", str(photos), "--teacher", str(tmp_path / "style"), "--cache",
                         str(tmp_path / "cache"), "--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "st"),
                         "--steps", "2", "--batch", "2", "--crop", "32", "--lpips", "0", "--widths", "8,16",
                         "--blocks", "0,1"]) == 0, capsys.readouterr().err
    assert "2/2 pairs" in capsys.readouterr().out and (tmp_path / "st" / "config.json").is_file()


def test_sketch_prior_learns_many_pairs_and_starts_a_style(tiny_cnn, tmp_path, monkeypatch):
    from diffsketch_core.style import cnn_prior

    pairs = []
    for size in ((128, 96), (112, 112), (144, 96)):
        photo, sketch = _card(size)
        pairs.append((np.asarray(photo, np.float32) / 255, np.asarray(sketch, np.float32) / 255))
    losses = []
    cfg = cnn_prior.PriorConfig(iterations=40, batch=2, crop=64, lr=5e-3, lpips=0.0)
    prior = cnn_prior.pretrain(tiny_cnn, pairs, cfg, on_event=lambda e: losses.append(e.losses.get("total")))
    assert np.mean(losses[-5:-1]) < 0.7 * np.mean(losses[1:5])
    prior.save_pretrained(tmp_path / "prior")
    stop, kinds = threading.Event(), []  # Stop: the pretraining ends after the step that set it, and says so
    cnn_prior.pretrain(tiny_cnn, pairs, cfg, on_event=lambda e: (kinds.append(e.kind), e.iteration == 3 and stop.set()),
                       cancel=stop)
    assert kinds[-1] == "cancelled" and kinds.count("step") == 3

    # the trainer starts from the prior when it fits the backbone, and records it
    monkeypatch.setattr(cnn_prior, "PRIOR_DIR", tmp_path / "prior")
    photo, sketch = _card()
    trainer = CNNOneShotTrainer(tiny_cnn, photo, sketch, _config(iterations=1))
    assert trainer.prior and trainer.generator.config.work_side == trainer.work_side
    ours, theirs = trainer.generator.state_dict(), prior.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert trainer.run().meta["prior"] == "cnn_sketch_prior"
    assert not CNNOneShotTrainer(tiny_cnn, photo, sketch, _config(iterations=1, prior=False)).prior

    # a prior learnt on other features is not used: zero-padded borders, or no prior at all
    zeros = load_cnn_backbone(cnn.TINY_CNN, work_side=96, padding="zeros")
    assert cnn_prior.load_prior(zeros) is None and not CNNOneShotTrainer(zeros, photo, sketch, _config(iterations=1)).prior
    assert cnn_prior.load_prior(tiny_cnn, folder=tmp_path / "none") is None
    (tmp_path / "prior" / "config.json").write_text("{not json")
    with pytest.raises(BadInputError, match="sketch prior"):
        cnn_prior.load_prior(tiny_cnn)


def test_sketch_prior_refuses_the_test_split_and_no_pairs(tiny_cnn):
    from diffsketch_core.style import cnn_prior

    with pytest.raises(BadInputError, match="test photos"):
        cnn_prior.bsds_pairs("nowhere", ("train", "test"))
    with pytest.raises(BadInputError, match="No BSDS500 photos"):
        cnn_prior.bsds_pairs("nowhere", ("train",))
    with pytest.raises(BadInputError, match="No .photo, sketch. pairs"):
        cnn_prior.pretrain(tiny_cnn, [])


@requires_shared
def test_shipped_sketch_prior_draws_edges_on_pretrained_vgg16_only():
    from diffsketch_core.style import cnn_prior

    bb = load_cnn_backbone("vgg16")
    prior = cnn_prior.load_prior(bb)
    assert prior is not None and prior.config.backbone["weights"] == "imagenet"
    photo, sketch = _card((256, 192))
    rgb = torch.from_numpy(np.asarray(photo, np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        out = prior(bb.extract(rgb, prior.taps), rgb)[0, 0].numpy()
    lines = np.asarray(sketch) < 128
    assert out[lines].mean() < out[~lines].mean() - 0.15  # darker on the shapes' outlines than elsewhere
    assert cnn_prior.load_prior(load_cnn_backbone(cnn.VGG16_RANDOM)) is None


def test_views_keep_the_sketchs_line_width_unless_rescaling_is_asked():
    from diffsketch_core.style.augment import AugmentConfig, augment_pair

    photo = Image.new("RGB", (160, 120), (200, 200, 200))
    sketch = Image.new("L", (160, 120), 255)
    ImageDraw.Draw(sketch).rectangle([30, 0, 31, 119], fill=0)  # a vertical line 2 px wide
    ImageDraw.Draw(photo).rectangle([30, 0, 31, 119], fill=(20, 20, 20))
    rng = np.random.default_rng(0)

    def widths(cfg):
        out = []
        for _ in range(12):
            _, k = augment_pair(photo, sketch, rng, cfg, side=96)
            ink = np.asarray(k) < 128
            if ink.any():
                out.append(int(ink.any(0).sum()))
        return set(out)

    assert widths(AugmentConfig()) == {2}  # crops and flips only: every view draws the line 2 px wide
    assert widths(AugmentConfig(scale=(1.5, 2.0))) - {2}  # a rescaled pair draws it thicker


@pytest.mark.parametrize("kw, said", [
    (dict(iterations=-1), "iterations must not be negative"), (dict(work_side=100_000), "work side must be 64 to 512"),
    (dict(work_side=8), "work side must be 64 to 512"), (dict(batch=0), "must be at least 1"),
    (dict(lr=-1.0), "lr must be above 0"),
])
def test_cpu_training_settings_are_checked_when_made(kw, said):
    with pytest.raises(BadInputError, match=f"Training settings: .*{said}"):
        CNNTrainConfig(**kw)
    assert CNNTrainConfig(iterations=0).iterations == 0  # the start alone: the benchmark's prior-only row


def test_cpu_training_cli_refuses_no_iterations(capsys):
    from diffsketch_core.style import cnn_training

    assert cnn_training.main(["--photo", "x.png", "--sketch", "y.png", "--out", "o", "--iterations", "0"]) == 2
    assert "error: --iterations must be at least 1, not 0" in capsys.readouterr().err
