from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import ROOT, ink_mask, requires_shared

import app
from ui import backbone_panel, classic, common, photo, rectify, strokes, style


def req(name):
    return SimpleNamespace(session_hash=name)


def uploaded(path) -> str:
    """A copy of `path` where Gradio keeps what users upload: the event functions take only files the app received."""
    import shutil
    import uuid

    target = Path(gr.utils.get_upload_folder()) / "test-uploads" / uuid.uuid4().hex / Path(path).name
    target.parent.mkdir(parents=True)
    shutil.copy(path, target)
    return str(target)


@requires_shared
def test_classic_sketch_on_a_real_photo(photo_path):
    shown, download, info = classic.classic_sketch(uploaded(photo_path), "pidinet", req("classic"))
    assert shown == download and shown.endswith(".png")
    with Image.open(shown) as out, Image.open(photo_path) as src:
        assert out.format == "PNG" and out.size == src.size
        assert 0.005 < ink_mask(out, 128).mean() < 0.5
    assert "PiDiNet" in info


def test_classic_sketch_on_shipped_example():
    example = ROOT / "assets" / "photos" / "coffee.png"
    shown, _, _ = classic.classic_sketch(uploaded(example), "canny")
    assert Image.open(shown).size == Image.open(example).size


def test_classic_sketch_errors_are_messages(tmp_path):
    with pytest.raises(gr.Error, match="Upload a photo"):
        classic.classic_sketch(None, "hed")
    bogus = tmp_path / "bogus.png"
    bogus.write_bytes(b"\x89PNG not really")
    with pytest.raises(gr.Error, match="Could not read"):
        classic.classic_sketch(uploaded(bogus), "hed")
    with pytest.raises(gr.Error, match="uploaded through the app"):
        classic.classic_sketch(str(bogus), "hed")


def test_demo_builds_with_its_tabs():
    assert isinstance(app.demo, gr.Blocks)
    labels = [b.label for b in app.demo.blocks.values() if isinstance(b, gr.Tab)]
    assert labels[:3] == ["Classic sketch", "Style", "Photo -> Sketch"]


def test_missing_real_backbone_explains_what_to_set():
    state, status, style_banner, photo_banner = backbone_panel.load_backbone_ui("CompVis/stable-diffusion-v1-4", False)
    assert state is None and "DIFFSKETCH_SD_MODEL" in status and "Demo backbone" in style_banner
    with pytest.raises(gr.Error, match="Needs Stable Diffusion"):
        next(style.train_style("a.png", "b.png", "", 3, None))
    with pytest.raises(gr.Error, match="Needs Stable Diffusion"):
        photo.photos_to_sketches(["a.png"], "Same as photo", 0, 0, False, "style", None)


def test_toasts_get_html_not_markdown():
    # gr.Error / gr.Info render sanitised HTML: Markdown marks would show as asterisks, a bare '<' as a tag
    text = common.toast("**Needs** the *Backbone* panel: set `DIFFSKETCH_SD_MODEL` <dir>, 2 * 3\n\nthen *Load*.")
    assert text == ("<b>Needs</b> the <i>Backbone</i> panel: set <code>DIFFSKETCH_SD_MODEL</code> &lt;dir&gt;, 2 * 3"
                    "<br><br>then <i>Load</i>.")
    with pytest.raises(gr.Error) as info:
        next(style.train_style("a.png", "b.png", "", 3, None))
    assert "<b>Needs Stable Diffusion" in str(info.value) and "**" not in str(info.value)


def test_iterations_start_where_each_backbone_trains_in_minutes():
    assert style.iterations_for("tiny") == 30 and style.iterations_for("vgg16") == 120
    assert style.iterations_for("CompVis/stable-diffusion-v1-4") == 1200
    assert style.iterations_for(None) == gr.update()  # a failed load leaves the slider alone
    # unticking the demo box starts the slider where the chosen backbone wants it (the CPU one: not SD's 1200)
    assert style.iterations_for(backbone_panel.chosen(" vgg16 ", False)) == 120
    assert backbone_panel.chosen("vgg16", True) == "tiny"


def test_style_refusal_names_the_cpu_backbone_and_its_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFSKETCH_WEIGHTS_DIR", str(tmp_path))  # a weights folder without VGG16
    with pytest.raises(gr.Error) as info:
        next(style.train_style("a.png", "b.png", "", 3, None))
    text = str(info.value)
    assert "CPU: VGG16 features" in text and "DIFFSKETCH_WEIGHTS_DIR" in text and "vgg16" in text


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    photo = Image.new("RGB", (128, 96), (200, 210, 230))
    ImageDraw.Draw(photo).rectangle([30, 20, 90, 80], fill=(90, 60, 40))
    sketch = Image.new("L", (128, 96), 255)
    ImageDraw.Draw(sketch).rectangle([30, 20, 90, 80], outline=0, width=2)
    photo.save(d / "photo.png")
    sketch.save(d / "sketch.png")
    return uploaded(d / "photo.png"), uploaded(d / "sketch.png")


def _train(pair_files, session, iterations=3):
    state, *_ = backbone_panel.load_backbone_ui("", True)
    assert state == "tiny"
    outs = list(style.train_style(*pair_files, "a box", iterations, state, req(session)))
    return state, outs


@requires_shared
def test_demo_training_yields_progress_and_a_downloadable_style(pair_files, tmp_path):
    state, outs = _train(pair_files, "alice")
    status, _, _, zipped, style_dir, button = outs[-1]
    assert "Training done after 3 iterations" in status and zipped.endswith(".zip")
    assert any("Iteration 1/3" in o[0] for o in outs)
    # the zip uploads back as a style, in another session
    folder, msg = style.upload_style(uploaded(zipped), state, req("bob"))
    assert "Loaded style" in msg and "bob" in folder
    (tmp_path / "notes.png").write_text("not a photo")
    gallery, zip_all, note = photo.photos_to_sketches([pair_files[0], uploaded(tmp_path / "notes.png")],
                                                    "Same as photo", 1, 0.5, True, folder, state, req("bob"))
    assert len(gallery) == 1 and "Skipped: notes.png" in note
    out = Image.open(gallery[0])
    assert out.mode == "RGBA" and out.size == (128, 96)
    assert set(np.unique(np.asarray(out)[..., 3])) <= {0, 255}  # thresholded ink, transparent paper


@requires_shared
def test_two_sessions_keep_their_own_styles(pair_files):
    _, a = _train(pair_files, "tab-a", 2)
    _, b = _train(pair_files, "tab-b", 2)
    dir_a, dir_b = a[-1][4], b[-1][4]
    assert dir_a != dir_b and "tab-a" in dir_a and "tab-b" in dir_b


@requires_shared
def test_stop_ends_training_early_keeps_the_style_and_blocks_a_second_start(pair_files):
    assert style.stop_training(req("stopper")) is not None  # Stop before Start: a message, no error
    gen = style.train_style(*pair_files, "", 200, "tiny", req("stopper"))
    next(gen)  # started
    next(gen)  # first iteration
    with pytest.raises(gr.Error, match="already running"):
        next(style.train_style(*pair_files, "", 3, "tiny", req("stopper")))
    assert "Stopping" in style.stop_training(req("stopper"))
    last = list(gen)[-1]
    assert "stopped early" in last[0] and last[3].endswith(".zip")


def test_style_upload_rejects_foreign_files(tmp_path):
    import zipfile

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("style.json", "{}")
        zf.writestr("model.pkl", b"\x80\x04")
    with pytest.raises(gr.Error, match="files a style never has"):
        style.upload_style(uploaded(evil), None, req("u"))
    not_zip = tmp_path / "x.zip"
    not_zip.write_text("hello")
    with pytest.raises(gr.Error, match="not a readable zip"):
        style.upload_style(uploaded(not_zip), None, req("u"))


SQUARE_JSON = "[[[100,100],[300,100],[300,300],[100,300],[100,100]], [[100,100],[300,300]]]"


@pytest.mark.skipif(not common.STROKES_READY, reason="no stroke checkpoint")
def test_draw_strokes_gives_pngs_svg_and_downloads():
    pngs, html, info, files = strokes.draw_strokes("apple", 2, "ddim", 1, req("draw"))
    assert len(pngs) == 2 and html.count("<svg") == 2 and "30 network evaluations" in info
    assert any(f.endswith(".npz") for f in files) and any(f.endswith(".zip") for f in files)
    with pytest.raises(gr.Error, match="Unknown class"):
        strokes.draw_strokes("dragon", 2, "ddim", 1)
    assert "recognisability guidance 0.15" in info
    _, _, plain, _ = strokes.draw_strokes("apple", 1, "skip", 1, req("draw"), classifier_guidance=0)
    assert "guidance" not in plain and "network evaluations per sketch" in plain
    with pytest.raises(gr.Error, match="Recognisability guidance must be between 0 and 0.3"):
        strokes.draw_strokes("apple", 1, "skip", 1, classifier_guidance=0.9)


@pytest.mark.skipif(not common.STROKES_READY, reason="no stroke checkpoint")
def test_rectify_tab_from_canvas_json_and_errors():
    before, after, html, info, files = rectify.rectify_sketch(SQUARE_JSON, None, "auto", "rectify", 0.3, 0.3, 0,
                                                        auto_strength=True, request=req("r"))
    assert Image.open(before).size == Image.open(after).size and "<svg" in html and "Rectified as" in info
    assert "Automatic strength" in info
    _, _, _, info, _ = rectify.rectify_sketch(SQUARE_JSON, None, "apple", "heal", 0.3, 0.3, 0, request=req("r"))
    assert "Healed as **apple**" in info
    for bad, match in (("[]", "empty"), ("{oops", "not a drawing"), ("[[[5,5]]]", "single dot"),
                       ('"/etc/hostname"', "not a drawing")):
        with pytest.raises(gr.Error, match=match):
            rectify.rectify_sketch(bad, None, "auto", "rectify", 0.5, 0.5, 0)


@pytest.mark.skipif(not common.STROKES_READY, reason="no stroke checkpoint")
def test_rectify_an_uploaded_drawing_and_a_blank_one(tmp_path):
    img = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(img).ellipse([40, 40, 160, 160], outline=0, width=4)
    img.save(tmp_path / "d.png")
    _, after, _, info, _ = rectify.rectify_sketch("[]", uploaded(tmp_path / "d.png"), "apple", "rectify", 0.3, 0.0, 0,
                                                  request=req("u"))
    assert "Rectified as **apple**" in info
    Image.new("L", (200, 200), 255).save(tmp_path / "blank.png")
    with pytest.raises(gr.Error, match="no ink"):
        rectify.rectify_sketch("[]", uploaded(tmp_path / "blank.png"), "apple", "rectify", 0.3, 0.0, 0)
