"""A hostile-but-realistic user (issue 18): every bad input ends in one clear sentence within its budget, no server
file can be read through the app, and nothing is left on disk. First against the event functions, then through
the launched app (gradio_client and plain REST, loopback only), each followed by a normal request."""

import json
import resource
import time
import zipfile
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import launched_app
from test_app import uploaded
from test_images import png_header

from diffsketch_core import budgets
from diffsketch_core.strokes.vectorize import vectorize
from diffsketch_core.errors import BadInputError
from ui import classic, common, rectify, strokes, style

needs_strokes = pytest.mark.skipif(not common.STROKES_READY, reason="no stroke checkpoint")


@pytest.fixture(autouse=True, scope="module")
def own_work_folder(tmp_path_factory):
    """This module's own copy of the app's temp folder: other test runs on the machine write into the real one."""
    real, common.WORK = common.WORK, tmp_path_factory.mktemp("work")
    yield common.WORK
    common.WORK = real
SERVER_FILE = "/etc/hostname"  # exists on any Linux machine
NO_FILE = "/etc/no-such-file-here.png"


def req(name):
    return SimpleNamespace(session_hash=name)


def message(fn, *args, **kwargs) -> str:
    with pytest.raises(gr.Error) as err:
        fn(*args, **kwargs)
    text = err.value.message
    assert text and "Traceback" not in text and "/tmp" not in text and "/etc" not in text
    return text


def _rectify(canvas_value="[]", upload=None, **kw):
    args = dict(class_name="auto", mode="rectify", strength=0.3, guidance=0.5, seed=0, auto_strength=False) | kw
    return rectify.rectify_sketch(canvas_value, upload, *args.values(), request=req("hostile"))


@pytest.fixture(scope="module")
def noise_png(tmp_path_factory):
    """The 57 KB upload that hung Rectify for more than 10 minutes: 512x512 black/white noise."""
    path = tmp_path_factory.mktemp("noise") / "noise.png"
    Image.fromarray((np.random.default_rng(0).random((512, 512)) > 0.5).astype(np.uint8) * 255).save(path)
    return path


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory):
    """A 1.4 MB style zip whose weights member inflates to 320 MiB (over the 256 MiB budget); its style.json and
    config.json are valid, so only the size can refuse it."""
    path = tmp_path_factory.mktemp("bomb") / "style.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("style.json", json.dumps({"format": "diffsketch-style", "version": 2}))
        zf.writestr("config.json", "{}")
        with zf.open("diffusion_pytorch_model.safetensors", "w", force_zip64=True) as f:
            zeros = bytes(16 * 1024**2)
            for _ in range(20):
                f.write(zeros)
    assert path.stat().st_size < 2e6
    return path


def _style_zip(path, style_json, config_json="{}"):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("style.json", style_json)
        zf.writestr("config.json", config_json)
        zf.writestr("diffusion_pytorch_model.safetensors", b"\0" * 16)
    return uploaded(path)


# ---------------------------------------------------------------- 1. the file-read hole

@needs_strokes
def test_a_path_string_as_canvas_is_not_a_drawing_and_says_nothing_about_the_file():
    said = {message(_rectify, json.dumps(p)) for p in (SERVER_FILE, NO_FILE)}
    assert len(said) == 1 and "not a drawing" in said.pop()  # the same sentence whether the file exists or not


def test_an_upload_must_be_a_file_the_app_received(tmp_path):
    local = tmp_path / "d.png"
    Image.new("L", (64, 64), 255).save(local)
    rectify_said = {message(_rectify, "[]", p) for p in (SERVER_FILE, NO_FILE, str(local), "../../etc/hostname")}
    classic_said = {message(classic.classic_sketch, p, "canny") for p in (SERVER_FILE, NO_FILE)}
    assert rectify_said == {"The drawing must be a file uploaded through the app."}  # one sentence for all of them
    assert classic_said == {"The photo must be a file uploaded through the app."}


# ---------------------------------------------------------------- 2. the noise image and the tracing budget

def test_noise_is_refused_before_tracing_within_a_second(noise_png):
    start = time.perf_counter()
    with pytest.raises(BadInputError, match="too much ink|separate lines"):
        vectorize(noise_png)
    assert time.perf_counter() - start < 1.0


def test_sparse_speckle_over_the_path_budget_is_refused():
    rng = np.random.default_rng(1)
    img = Image.new("L", (512, 512), 255)
    d = ImageDraw.Draw(img)
    for x, y in rng.integers(0, 506, (budgets.MAX_TRACED_PATHS + 500, 2)):
        d.line([x, y, x + 4, y + 4], fill=0)  # short separate dashes: one path each
    with pytest.raises(BadInputError, match="separate lines"):
        vectorize(img)


def test_a_drawing_within_the_budget_is_traced_in_order():
    img = Image.new("L", (300, 300), 255)
    d = ImageDraw.Draw(img)
    d.line([20, 20, 280, 20], fill=0, width=3)
    d.line([20, 280, 280, 280], fill=0, width=3)
    s = vectorize(img)
    assert s[:, 2].sum() == 2  # two strokes, each ended by a pen lift


@needs_strokes
def test_noise_upload_to_rectify_answers_with_a_sentence_in_seconds(noise_png):
    start = time.perf_counter()
    said = message(_rectify, "[]", uploaded(noise_png))
    assert "too much ink" in said or "looks like noise" in said
    assert time.perf_counter() - start < 5


# ---------------------------------------------------------------- 3. pixels

def test_a_pixel_bomb_is_refused_from_its_header_in_every_image_tab(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(24_500, 24_500))  # 600 MP, the case
    path = uploaded(bomb)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert "MP this app decodes" in message(classic.classic_sketch, path, "canny")
    if common.STROKES_READY:
        assert "MP this app decodes" in message(_rectify, "[]", path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: nothing decoded


# ---------------------------------------------------------------- 4. errors with no message

@needs_strokes
@pytest.mark.parametrize("value, match", [
    ('[[["1", "2"], ["3", "4"]]]', "not a drawing"),  # strings instead of numbers
    ('[{"x": 1, "y": 2}]', "not a drawing"),  # objects
    ('{"strokes": []}', "not a drawing"),
    ("[" * 100_000 + "]" * 100_000, "not a drawing"),  # deep nesting
    ('[[[1, 2, 3], [4, 5, 6]]]', "not a drawing"),
    ('[[[true, false], [1, 2]]]', "not a drawing"),
    ('[[[NaN, 1], [2, 3]]]', "finite"),
    ('[[[Infinity, 1], [2, 3]]]', "finite"),
    (f'[[[1{"0" * 400}, 1], [2, 3]]]', "not a drawing"),  # an integer too large for a float
    (json.dumps([[[i, i]] for i in range(budgets.MAX_CANVAS_STROKES + 1)]), "strokes; at most"),
    (json.dumps([[[i % 500, i % 400] for i in range(budgets.MAX_CANVAS_POINTS + 1)]]), "points; at most"),
    ("[" * 10 + "0" * (budgets.MAX_CANVAS_CHARS + 1), "too large to send"),
    (123, "not a drawing"),
    (None, "not a drawing"),
    ("[]", "empty"),
], ids=["strings", "objects", "dict", "deep", "triples", "booleans", "nan", "inf", "huge-int", "strokes", "points",
        "chars", "number", "null", "empty"])
def test_malformed_canvas_values_get_a_sentence(value, match):
    start = time.perf_counter()
    assert match in message(_rectify, value)
    assert time.perf_counter() - start < 5


@needs_strokes
@pytest.mark.parametrize("kw, match", [
    (dict(seed=2**64), "Seed must be a whole number"),
    (dict(seed=None), "Seed must be a number"),
    (dict(seed=""), "Seed must be a number"),
    (dict(seed=-1), "Seed must be a whole number"),
    (dict(seed=1.5), "Seed must be a whole number"),
    (dict(guidance=float("nan")), "finite"),
    (dict(strength="lots"), "Strength must be a number"),
    (dict(mode="explode"), "Mode must be one of"),
    (dict(auto_strength="yes"), "true or false"),
])
def test_bad_rectify_settings_get_a_sentence(kw, match):
    assert match in message(_rectify, "[[[1, 1], [50, 50]]]", **kw)


@needs_strokes
@pytest.mark.parametrize("count, sampler, seed, match", [
    ("four", "ddim", 0, "How many must be a number"),
    (None, "ddim", 0, "How many must be a number"),
    (2.5, "ddim", 0, "whole number"),
    (500, "ddim", 0, "from 1 to 16"),
    (2, "ddim", 2**64, "Seed"),
    (2, "ddim", None, "Seed"),
    (budgets.MAX_DDPM_SKETCHES + 1, "ddpm", 0, "at most"),
    (2, "warp", 0, "Sampler must be one of"),
])
def test_bad_draw_settings_get_a_sentence(count, sampler, seed, match):
    assert match in message(strokes.draw_strokes, "any", count, sampler, seed)


@pytest.mark.parametrize("style_json, config_json, match", [
    ("[1, 2]", "{}", "must be a JSON object"),
    ('{"format": "diffsketch-style", "version": 99}', "{}", "newer version"),
    ('{"format": "diffsketch-style", "version": "two"}', "{}", "not one this version knows"),
    ('{"format": "diffsketch-style", "version": 2}', "[]", "not a generator configuration"),
    ('{"format": "diffsketch-style", "version": 2}', "{}", "names no model class"),  # names the folder: scrubbed
])
def test_malformed_style_zips_get_a_sentence_and_leave_no_folder(tmp_path, style_json, config_json, match):
    path = _style_zip(tmp_path / "s.zip", style_json, config_json)
    session = common.WORK / "zips"
    before = set(session.glob("*")) if session.exists() else set()
    said = message(style.upload_style, path, None, req("zips"))
    assert match in said and "huggingface" not in said
    assert set(session.glob("*")) <= before


def test_the_gradio_preprocessing_of_every_input_speaks_in_sentences(tmp_path):
    import app

    blocks = app.demo.blocks.values()
    image = next(b for b in blocks if isinstance(b, gr.Image) and b.label == "Photo")
    slider = next(b for b in blocks if isinstance(b, gr.Slider) and b.label == "Iterations")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("not an image")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(9000, 9000))  # in the band where Pillow only warns
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_header(30000, 30000))  # 900 MP: past it, where Gradio's own decoding failed with no text
    for path, match in ((empty, "empty (0 bytes)"), (text, "not an image"), (bomb, "MP this app decodes"),
                        (huge, "MP this app decodes")):
        payload = gr.FileData(path=uploaded(path), orig_name=path.name)
        assert match in message(image.preprocess, payload)
    assert "must be a file uploaded" in message(image.preprocess, gr.FileData(path=SERVER_FILE, orig_name="x.png"))
    for bad in ("four", None, float("nan"), True):
        assert "Iterations must be a finite number" in message(slider.preprocess, bad)
    assert slider.preprocess(30) == 30


# ---------------------------------------------------------------- 5. zip bombs

def test_a_zip_bomb_is_refused_from_its_headers_without_writing(zip_bomb):
    session = common.WORK / "bomber"
    start = time.perf_counter()
    assert "too large to be a DiffSketch style" in message(style.upload_style, uploaded(zip_bomb), None, req("bomber"))
    assert time.perf_counter() - start < 2
    assert not session.exists() or not any(session.glob("uploaded-*"))


def test_a_member_larger_than_its_header_says_is_refused_while_streaming(tmp_path):
    """A header that lies: the member declares 1 KB in both headers but inflates to 2 MB (zipfile itself stops at
    the declared size; the streaming cap is the second line)."""
    from diffsketch_core.style import archive

    path = tmp_path / "liar.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("style.json", "{}")
        zf.writestr("config.json", "{}")
        zf.writestr("diffusion_pytorch_model.safetensors", bytes(2 * 1024**2))
    raw = bytearray(path.read_bytes())
    real = (2 * 1024**2).to_bytes(4, "little")
    for i in [i for i in range(len(raw) - 4) if raw[i:i + 4] == real]:
        raw[i:i + 4] = (1024).to_bytes(4, "little")  # the uncompressed size, in the local and the central header
    path.write_bytes(bytes(raw))
    with pytest.raises(BadInputError, match="damaged|not a readable zip"):
        archive.unpack_style(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- 6. files left behind

def test_the_sweep_removes_request_outputs_and_abandoned_sessions_only():
    fresh = common.output_dir(req("sweep-a"), "classic")
    old = common.output_dir(req("sweep-a"), "classic")
    beside = old.with_suffix(".zip")  # Photo -> Sketch zips its output folder beside it
    beside.write_bytes(b"PK")
    kept_style = common.user_dir(req("sweep-b")) / "style-1"
    kept_style.mkdir(exist_ok=True)
    now = time.time()
    common.sweep(now=now + budgets.OUTPUT_TTL_S + 1, session_ttl=1e9)
    assert not old.exists() and not fresh.exists() and not beside.exists()
    assert not (common.WORK / "sweep-a").exists()  # the emptied session folder went too
    assert kept_style.exists()  # a session's style outlives its requests
    common.sweep(now=now + budgets.SESSION_TTL_S + 1)
    assert not (common.WORK / "sweep-b").exists()


# ---------------------------------------------------------------- through the launched app

@pytest.fixture(scope="module")
def server():
    with launched_app() as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server + "/", verbose=False)


def rest(server: str, api: str, data: list, raw: str | None = None) -> tuple[str, str]:
    """A plain REST call (POST /gradio_api/call/<api>, then read its event stream): (last event, its data)."""
    import httpx

    body = raw if raw is not None else json.dumps({"data": data})
    r = httpx.post(f"{server}/gradio_api/call/{api}", content=body, headers={"Content-Type": "application/json"},
                   timeout=30)
    r.raise_for_status()
    stream = httpx.get(f"{server}/gradio_api/call/{api}/{r.json()['event_id']}", timeout=60).text
    events = [line.split(": ", 1)[1] for line in stream.splitlines() if line.startswith("event: ")]
    datas = [line.split(": ", 1)[1] for line in stream.splitlines() if line.startswith("data: ")]
    return events[-1], datas[-1]


def _normal_request_works(client):
    from gradio_client import handle_file

    from conftest import ROOT

    *_, info = client.predict(handle_file(str(ROOT / "assets" / "photos" / "chelsea.png")), "canny",
                              api_name="/classic_sketch")
    assert "451x300" in info


def _app_error(client, *args, api_name) -> str:
    with pytest.raises(Exception) as err:
        client.predict(*args, api_name=api_name)
    text = str(err.value)
    assert text and text != "None" and "/tmp" not in text and "/etc" not in text
    return text


@needs_strokes
def test_live_the_file_path_string_is_refused_and_the_app_keeps_serving(server, client):
    said = _app_error(client, json.dumps(SERVER_FILE), None, "auto", "rectify", 0.3, 0.5, 0, False, 0.15,
                      api_name="/rectify")
    assert "not a drawing" in said
    # a file named by path in the upload slot, over plain REST: the same sentence whether it exists or not
    answers = {rest(server, "rectify", ["[]", {"path": p, "meta": {"_type": "gradio.FileData"}}, "auto", "rectify",
                                         0.3, 0.5, 0, False, 0.15]) for p in (SERVER_FILE, NO_FILE)}
    assert len(answers) == 1
    event, data = answers.pop()
    assert event == "error" and "uploaded through the app" in data and "/etc" not in data
    event, data = rest(server, "rectify", [], raw='{"data": ["[[[1, 1], [60, 60]]]", null, "auto", "rectify", 0.3, '
                                                   'NaN, 0, false, 0.15]}')
    assert event == "error" and "finite" in data  # NaN guidance over raw REST
    _normal_request_works(client)


@needs_strokes
def test_live_noise_image_answers_within_seconds(client, noise_png):
    from gradio_client import handle_file

    start = time.perf_counter()
    said = _app_error(client, "[]", handle_file(str(noise_png)), "auto", "rectify", 0.3, 0.5, 0, False, 0.15,
                      api_name="/rectify")
    assert "looks like noise" in said or "too much ink" in said
    assert time.perf_counter() - start < 10
    _normal_request_works(client)


def test_live_zip_bomb_and_empty_upload_get_sentences(client, zip_bomb, tmp_path):
    from gradio_client import handle_file

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    assert "too large to be a DiffSketch style" in _app_error(client, handle_file(str(zip_bomb)),
                                                              api_name="/upload_style")
    assert time.perf_counter() - start < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB
    assert not list(common.WORK.glob("*/uploaded-*"))
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert "empty (0 bytes)" in _app_error(client, handle_file(str(empty)), "canny", api_name="/classic_sketch")
    _normal_request_works(client)


def test_live_rest_calls_leave_no_folder_behind(server):
    """Each plain REST call is a session that never ends (no unload fires): its outputs must not stay."""
    from conftest import ROOT
    from gradio_client import Client, handle_file

    assert common._SWEEPER and common._SWEEPER[0].is_alive()  # what runs the sweep every SWEEP_EVERY_S
    later = budgets.OUTPUT_TTL_S + 1
    common.sweep(now=time.time() + later)
    before = sorted(p.name for p in common.WORK.iterdir())
    predict = Client(server + "/", verbose=False).predict  # one client: one session, several requests
    for _ in range(3):
        predict(handle_file(str(ROOT / "assets" / "photos" / "chelsea.png")), "canny", api_name="/classic_sketch")
    for _ in range(3):  # each plain REST call is a session of its own
        event, _ = rest(server, "method_note", ["canny"])
        assert event == "complete"
        if common.STROKES_READY:
            assert rest(server, "draw_strokes", ["any", 1, "ddim", 0, 0.15])[0] == "complete"
    written = list(common.WORK.glob("*/out-*"))
    assert len(written) >= 3  # the calls did leave their outputs (so this test can fail)
    common.sweep(now=time.time() + later)
    assert sorted(p.name for p in common.WORK.iterdir()) == before
