"""DiffSketch Studio: the Gradio app. Layout, events and per-user state only; every computation lives in
diffsketch_core.

Run: python app.py   (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override host and port)
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np

from diffsketch_core import settings
from diffsketch_core.backbone import TINY, Backbone, load_backbone
from diffsketch_core.errors import DiffSketchError
from diffsketch_core.extractors import METHODS, extract_sketch
from diffsketch_core.jobs import JobResult, iterate_events
from diffsketch_core.losses import LossWeights, load_clip, load_lpips
from diffsketch_core.photo2sketch import PhotoToSketch, finish
from diffsketch_core.strokes import generate as strokes_api
from diffsketch_core.strokes.export import export as export_sketches
from diffsketch_core.strokes.rectify import heal, rectify
from diffsketch_core.strokes.svg import to_svg
from diffsketch_core.style import load_style, pack_style, unpack_style
from diffsketch_core.training import OneShotTrainer, TrainConfig, TrainEvent

try:  # on a ZeroGPU Space this requests a GPU for the call; elsewhere it returns the function unchanged
    from spaces import GPU
except ImportError:  # pragma: no cover - spaces is in requirements.txt
    def GPU(fn=None, **_kw):
        return fn if fn is not None else (lambda f: f)

ASSETS = Path(__file__).parent / "assets"
WORK = Path(tempfile.gettempdir()) / "diffsketch-studio"
EXTRACTOR_LABELS = {"hed": "HED (soft, detailed)", "pidinet": "PiDiNet (clean contours)",
                    "xdog": "XDoG (tonal, DiffSketch's setting)", "canny": "Canny (thin, hard edges)"}
DEMO_BANNER = ("**Demo backbone** — tiny Stable-Diffusion-shaped model with *random weights*. Everything runs end "
               "to end, but the sketches mean nothing. Point the Backbone panel at real SD 1.x weights for real results.")
NEEDS_WEIGHTS = (f"**Needs Stable Diffusion 1.x weights.** Open the *Backbone* panel above and enter a hub id or a local "
                 f"diffusers folder (or set `{settings.SD_MODEL_ENV}` before starting the app), then *Load*. "
                 "Tick *Demo backbone* to try the pipeline with random weights.")


# ---------------------------------------------------------------- shared, read-only models

@functools.lru_cache(maxsize=2)
def _backbone(source: str) -> Backbone:
    return load_backbone(source)


@functools.lru_cache(maxsize=2)
def _clip(demo: bool):
    return load_clip("tiny" if demo else None)


def _user_dir(request: gr.Request | None) -> Path:
    """Files of one browser session: nothing here is visible to another user."""
    path = WORK / _session(request)
    path.mkdir(parents=True, exist_ok=True)
    return path


# Cancel flags of running trainings, one per browser session. gr.State hands each event its own copy, so a
# flag that the Stop event sets must live here, keyed by the session, to reach the running training.
_RUNNING: dict[str, threading.Event] = {}


def _session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "local"


def _cleanup(request: gr.Request) -> None:
    flag = _RUNNING.pop(_session(request), None)
    if flag is not None:
        flag.set()
    shutil.rmtree(WORK / _session(request), ignore_errors=True)


def _fail(exc: Exception) -> gr.Error:
    return gr.Error(str(exc))


def _banner(source: str | None) -> str:
    if source is None:
        return NEEDS_WEIGHTS
    return DEMO_BANNER if source == TINY else f"Backbone: `{source}`"


# ---------------------------------------------------------------- Classic sketch

def classic_sketch(photo: str | None, method: str, request: gr.Request | None = None) -> tuple[str, str, str]:
    """Photo file -> (sketch PNG for display, same file for download, notes)."""
    if not photo:
        raise gr.Error("Upload a photo first.")
    try:
        sketch = extract_sketch(photo, method)
    except DiffSketchError as exc:
        raise _fail(exc) from None
    out = _user_dir(request) / f"sketch-{method}-{time.time_ns()}.png"
    sketch.image.save(out)
    w, h = sketch.image.size
    return str(out), str(out), f"{EXTRACTOR_LABELS[method]} sketch, {w}x{h} px. {' '.join(sketch.notes)}".strip()


def _classic_tab() -> None:
    with gr.Row():
        with gr.Column():
            photo = gr.Image(label="Photo", type="filepath", image_mode=None, sources=["upload", "clipboard"])
            method = gr.Radio([(EXTRACTOR_LABELS[m], m) for m in METHODS], value="pidinet", label="Extractor")
            run = gr.Button("Make sketch", variant="primary")
        with gr.Column():
            sketch = gr.Image(label="Sketch", type="filepath", format="png", interactive=False)
            download = gr.DownloadButton("Download PNG")
            info = gr.Markdown()
    examples = sorted(str(p) for p in (ASSETS / "photos").glob("*.png"))
    if examples:
        gr.Examples(examples, inputs=[photo], label="Example photos")
    run.click(classic_sketch, [photo, method], [sketch, download, info], api_name="classic_sketch",
              concurrency_limit=2)


# ---------------------------------------------------------------- Backbone panel

def load_backbone_ui(source: str, demo: bool) -> tuple[str | None, str, str, str]:
    """-> (backbone state, status, Style banner, Photo->Sketch banner)."""
    wanted = TINY if demo else (source or "").strip() or settings.sd_model()
    try:
        _backbone(wanted)
        if not demo:
            _clip(False)  # training needs CLIP too: say so now rather than at Train
    except DiffSketchError as exc:
        msg = f"Could not load `{wanted}`: {exc}"
        return None, msg, NEEDS_WEIGHTS, NEEDS_WEIGHTS
    banner = _banner(wanted)
    return wanted, f"Loaded `{wanted}`.", banner, banner


def _backbone_panel(state: gr.State) -> tuple[gr.Textbox, gr.Checkbox, gr.Button, gr.Markdown]:
    with gr.Accordion("Backbone (Stable Diffusion 1.x)", open=False):
        with gr.Row():
            source = gr.Textbox(settings.sd_model(), label="Hub id or local diffusers folder", scale=3)
            demo = gr.Checkbox(False, label="Demo backbone (tiny, random weights)", scale=1)
            load = gr.Button("Load", scale=1)
        status = gr.Markdown("No backbone loaded yet. Style training and Photo -> Sketch need one.")
    return source, demo, load, status


# ---------------------------------------------------------------- Style

def make_starting_sketch(photo: str | None, method: str, request: gr.Request | None = None) -> str:
    if not photo:
        raise gr.Error("Upload the photo first; the starting sketch is made from it.")
    return classic_sketch(photo, method, request)[0]


def _preview_images(event: TrainEvent) -> tuple[np.ndarray | None, np.ndarray | None]:
    if not event.preview:
        return gr.skip(), gr.skip()
    return event.preview["example"], event.preview["sample"]


@GPU(duration=600)
def train_style(photo, sketch, caption, iterations, source, request: gr.Request | None = None):
    """Generator: yields (status, example preview, sample preview, download, style state, train button)."""
    if source is None:
        raise gr.Error(NEEDS_WEIGHTS)
    if not photo or not sketch:
        raise gr.Error("Upload a photo and your sketch of it (or make a starting sketch).")
    session = _session(request)
    if session in _RUNNING:
        raise gr.Error("Training is already running in this tab; press Stop first.")
    cancel = _RUNNING[session] = threading.Event()  # registered first: Stop works while the trainer is set up
    try:
        yield from _train(photo, sketch, caption, int(iterations), source, cancel, request)
    finally:
        _RUNNING.pop(session, None)


def _train(photo, sketch, caption, iterations, source, cancel, request):
    demo = source == TINY
    yield "Preparing: features of your photo, text prior...", gr.skip(), gr.skip(), gr.skip(), gr.skip(), \
        gr.update(interactive=False)
    try:
        bb = _backbone(source)
        weights, note, lpips_model = LossWeights(), "", None
        if demo:
            try:
                lpips_model = load_lpips()
            except DiffSketchError:  # the demo runs anywhere; a real training insists on every loss
                weights, note = LossWeights(lpips=0.0), "LPIPS weights not found: demo trains without the LPIPS term. "
        cfg = TrainConfig(iterations=iterations, horizon=max(1, iterations * 5 // 6), weights=weights,
                          preview_every=max(1, iterations // 20), **({"sample_steps": 4, "gen_batch": 2} if demo else {}))
        trainer = OneShotTrainer(bb, photo, sketch, caption or "", cfg, clip=_clip(demo), lpips_model=lpips_model)
    except DiffSketchError as exc:
        raise _fail(exc) from None
    yield f"Training started. {note}{' '.join(trainer.notes)}", *[gr.skip()] * 5
    try:
        for ev in iterate_events(trainer.run, cancel):
            if isinstance(ev, JobResult):
                folder = _user_dir(request) / f"style-{time.time_ns()}"
                ev.value.save(folder)
                zipped = pack_style(folder, folder.with_suffix(".zip"))
                stopped = "stopped early" if cancel.is_set() else "done"
                msg = f"Training {stopped} after {trainer.iteration} iterations. The style is ready in Photo -> Sketch."
                yield msg, gr.skip(), gr.skip(), str(zipped), str(folder), gr.update(interactive=True)
            elif ev.kind in ("step", "preview"):
                loss = ev.losses.get("total", float("nan"))
                eta = ev.seconds / max(ev.iteration, 1) * (ev.total - ev.iteration)
                msg = f"Iteration {ev.iteration}/{ev.total}, loss {loss:.3f}, about {eta:.0f} s left."
                ex, sa = _preview_images(ev)
                yield msg, ex, sa, gr.skip(), gr.skip(), gr.skip()
    except DiffSketchError as exc:
        raise _fail(exc) from None


def stop_training(request: gr.Request | None = None) -> str:
    cancel = _RUNNING.get(_session(request))
    if cancel is None:
        gr.Info("Nothing to stop: no training is running in this tab.")
        return gr.skip()
    cancel.set()
    return "Stopping after the current iteration..."


def upload_style(file: str | None, source: str | None, request: gr.Request | None = None) -> tuple[str, str]:
    if not file:
        raise gr.Error("Choose a style .zip to upload.")
    folder = _user_dir(request) / f"uploaded-{time.time_ns()}"
    try:
        unpack_style(file, folder)
        style = load_style(folder, _backbone(source) if source else None)
    except DiffSketchError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise _fail(exc) from None
    return str(folder), f"Loaded style ({style.resolution} px, caption '{style.caption}')."


def _style_tab(backbone: gr.State, style_state: gr.State):
    banner = gr.Markdown(NEEDS_WEIGHTS)
    with gr.Row():
        photo = gr.Image(label="Your photo", type="filepath", image_mode=None, sources=["upload", "clipboard"])
        sketch = gr.Image(label="Your sketch of it", type="filepath", image_mode=None, sources=["upload", "clipboard"])
    with gr.Row():
        start_method = gr.Radio([(EXTRACTOR_LABELS[m], m) for m in ("hed", "pidinet", "xdog")], value="pidinet",
                                label="Make a starting sketch with")
        make = gr.Button("Make starting sketch")
    with gr.Row():
        caption = gr.Textbox(label="Caption (optional): what the photo shows", placeholder="a photo of a horse in mud")
        iterations = gr.Slider(2, 1500, value=1200, step=1, label="Iterations")
    with gr.Row():
        train = gr.Button("Train", variant="primary")
        stop = gr.Button("Stop", variant="stop")
    status = gr.Markdown()
    with gr.Row():
        prev_ex = gr.Image(label="Your photo, current style", format="png", interactive=False)
        prev_sa = gr.Image(label="A training sample, current style", format="png", interactive=False)
    download = gr.DownloadButton("Download style (.zip)")
    with gr.Accordion("Use a saved style", open=False):
        upload = gr.File(label="Style .zip", file_types=[".zip"])
        upload_status = gr.Markdown()
    make.click(make_starting_sketch, [photo, start_method], [sketch])
    train.click(train_style, [photo, sketch, caption, iterations, backbone],
                [status, prev_ex, prev_sa, download, style_state, train], concurrency_limit=1,
                concurrency_id="gpu", trigger_mode="once")
    stop.click(stop_training, None, [status], concurrency_limit=None)
    upload.upload(upload_style, [upload, backbone], [style_state, upload_status])
    return banner, iterations


# ---------------------------------------------------------------- Photo -> Sketch

SIZES = {"Same as photo": None, "512 px (long side)": 512, "1024 px (long side)": 1024}


@GPU(duration=120)
def photos_to_sketches(files, size, line_weight, threshold, transparent, style_dir, source,
                       request: gr.Request | None = None, progress=gr.Progress()):
    if source is None:
        raise gr.Error(NEEDS_WEIGHTS)
    if not style_dir:
        raise gr.Error("No style yet: train one in the Style tab or upload a saved style there.")
    if not files:
        raise gr.Error("Upload one or more photos.")
    try:
        bb = _backbone(source)
        model = PhotoToSketch(load_style(style_dir, bb), bb)
    except DiffSketchError as exc:
        raise _fail(exc) from None
    out_dir = _user_dir(request) / f"sketches-{time.time_ns()}"
    out_dir.mkdir()
    outputs, problems = [], []
    for path in progress.tqdm(files, desc="Sketching"):
        path = Path(path)
        try:
            result = model(path)
        except DiffSketchError as exc:
            problems.append(f"{path.name}: {exc}")
            continue
        img = result.sketch
        if SIZES.get(size):
            s = SIZES[size] / max(img.size)
            img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))))
        img = finish(img, int(line_weight), threshold if threshold > 0 else None, bool(transparent))
        target = out_dir / f"{path.stem}-sketch.png"
        img.save(target)
        outputs.append(str(target))
    if not outputs:
        raise gr.Error("No photo could be sketched: " + "; ".join(problems))
    zipped = out_dir.with_suffix(".zip")
    with zipfile.ZipFile(zipped, "w") as zf:
        for o in outputs:
            zf.write(o, Path(o).name)
    note = f"{len(outputs)} sketch(es)." + (" Skipped: " + "; ".join(problems) if problems else "")
    return outputs, str(zipped), note


def _photo_tab(backbone: gr.State, style_state: gr.State):
    banner = gr.Markdown(NEEDS_WEIGHTS)
    with gr.Row():
        with gr.Column():
            files = gr.File(label="Photos", file_count="multiple", file_types=["image"])
            size = gr.Radio(list(SIZES), value="Same as photo", label="Output size")
            weight = gr.Slider(-2, 3, value=0, step=1, label="Line weight (px thinner / thicker)")
            threshold = gr.Slider(0, 1, value=0, step=0.05, label="Threshold (0 = keep grey tones)")
            transparent = gr.Checkbox(False, label="Transparent background")
            run = gr.Button("Sketch photos", variant="primary")
        with gr.Column():
            gallery = gr.Gallery(label="Sketches", format="png", columns=2)
            download = gr.DownloadButton("Download all (.zip)")
            note = gr.Markdown()
    run.click(photos_to_sketches, [files, size, weight, threshold, transparent, style_state, backbone],
              [gallery, download, note], concurrency_limit=1, concurrency_id="gpu")
    return banner


# ---------------------------------------------------------------- Draw strokes

STROKE_MODEL = strokes_api.DEFAULT_MODEL
CLASSIFIER = strokes_api.CHECKPOINTS / "sketch_classifier"
STROKES_READY = (STROKE_MODEL / "config.json").is_file()
SKIP_READY = (strokes_api.DEFAULT_RECOGNIZABILITY / "config.json").is_file()
SAMPLER_LABELS = {"skip": "Fast: recognizability skipping", "schedule": "Fast: precomputed r(t) schedule",
                  "ddim": "DDIM, 30 steps", "ddpm": "Full: DDPM, 1000 steps"}


@functools.lru_cache(maxsize=1)
def _classifier():
    from diffsketch_core.strokes.classifier import load_classifier
    return load_classifier(CLASSIFIER) if (CLASSIFIER / "config.json").is_file() else None


def _stroke_classes() -> list[str]:
    return list(strokes_api.load_stroke_model().config.class_names) if STROKES_READY else []


def _svg_grid(sketches) -> str:
    cells = "".join(f'<div style="width:200px">{to_svg(s, 200, 2.5, animated=True)}</div>' for s in sketches)
    return f'<div style="display:flex;flex-wrap:wrap;gap:8px">{cells}</div>'


def draw_strokes(class_name: str, count: float, sampler: str, seed: float, request: gr.Request | None = None):
    """-> (gallery PNGs, animated SVG preview HTML, info, download files)."""
    try:
        gen = strokes_api.generate(None if class_name == "any" else class_name, int(count), sampler, seed=int(seed))
    except DiffSketchError as exc:
        raise _fail(exc) from None
    files = export_sketches(gen.sketches, _user_dir(request) / f"strokes-{time.time_ns()}", stem=class_name)
    per = gen.seconds / len(gen.sketches)
    info = (f"{len(gen.sketches)} sketch(es) of **{class_name}** with *{SAMPLER_LABELS[sampler]}*: "
            f"{gen.nfe} network evaluations per sketch, {gen.seconds:.2f} s in all ({per:.3f} s per sketch).")
    return files.pngs, _svg_grid(gen.sketches), info, [files.zip, files.npz] + files.svgs


def _strokes_tab() -> None:
    samplers = [k for k in SAMPLER_LABELS if SKIP_READY or k not in ("skip", "schedule")]
    with gr.Row():
        with gr.Column(scale=1):
            cls = gr.Dropdown(["any"] + _stroke_classes(), value="any", label="Class")
            count = gr.Slider(1, 16, value=4, step=1, label="How many")
            sampler = gr.Radio([(SAMPLER_LABELS[k], k) for k in samplers], value=samplers[0], label="Sampler")
            seed = gr.Number(0, precision=0, label="Seed")
            go = gr.Button("Draw", variant="primary")
        with gr.Column(scale=2):
            info = gr.Markdown()
            preview = gr.HTML(label="Animated preview")
            gallery = gr.Gallery(label="Sketches", format="png", columns=4, height=260)
            files = gr.File(label="Downloads (zip, npz, SVG)", file_count="multiple")
    go.click(draw_strokes, [cls, count, sampler, seed], [gallery, preview, info, files], api_name="draw_strokes",
             concurrency_limit=2)


# ---------------------------------------------------------------- Rectify

CANVAS_SIZE = 512
CANVAS_HTML = f"""<div class="ds-pad"><canvas width="{CANVAS_SIZE}" height="{CANVAS_SIZE}"></canvas>
<div class="ds-tools"><button type="button" data-action="undo">Undo</button>
<button type="button" data-action="clear">Clear</button><span data-role="count"></span></div></div>"""
CANVAS_CSS = """.ds-pad canvas { width: 100%; max-width: 512px; aspect-ratio: 1; border: 1px solid #bbb; border-radius: 6px;
  touch-action: none; background: #fff; cursor: crosshair; display: block; }
.ds-tools { margin-top: 6px; display: flex; gap: 8px; align-items: center; }
.ds-tools button { padding: 2px 12px; border: 1px solid #bbb; border-radius: 4px; background: #f6f6f6; }"""
# Records strokes in order (Sketchpad only returns rasters) and sends them as JSON [[[x, y], ...], ...] in canvas
# pixels. Listeners sit on the component's root, which survives re-renders; the canvas is redrawn from the strokes.
CANVAS_JS = """
const strokes = []; let current = null;
const canvas = () => element.querySelector('canvas');
const publish = () => { props.value = JSON.stringify(strokes); trigger('change');
  requestAnimationFrame(redraw); };
function point(e) { const c = canvas(), r = c.getBoundingClientRect();
  return [Math.round((e.clientX - r.left) * c.width / r.width * 10) / 10,
          Math.round((e.clientY - r.top) * c.height / r.height * 10) / 10]; }
function redraw() { const c = canvas(); if (!c) return; const g = c.getContext('2d');
  g.fillStyle = '#fff'; g.fillRect(0, 0, c.width, c.height);
  g.strokeStyle = '#111'; g.lineWidth = 4; g.lineCap = 'round'; g.lineJoin = 'round';
  for (const s of current ? strokes.concat([current]) : strokes) { g.beginPath();
    s.forEach((p, i) => i ? g.lineTo(p[0], p[1]) : g.moveTo(p[0], p[1]));
    if (s.length === 1) g.lineTo(s[0][0] + 0.1, s[0][1]); g.stroke(); }
  const n = element.querySelector('[data-role=count]'); if (n) n.textContent = strokes.length + ' strokes'; }
element.addEventListener('pointerdown', e => { if (e.target.tagName !== 'CANVAS') return;
  e.target.setPointerCapture(e.pointerId); current = [point(e)]; redraw(); });
element.addEventListener('pointermove', e => { if (current) { current.push(point(e)); redraw(); } });
const finish = () => { if (!current) return; strokes.push(current); current = null; publish(); };
element.addEventListener('pointerup', finish); element.addEventListener('pointercancel', finish);
element.addEventListener('click', e => { const a = e.target.dataset && e.target.dataset.action;
  if (a === 'clear') { strokes.length = 0; publish(); } if (a === 'undo') { strokes.pop(); publish(); } });
redraw();
"""


def _rough_input(canvas_json: str, upload: str | None):
    import json

    if upload:
        return upload
    try:
        strokes = json.loads(canvas_json or "[]")
    except json.JSONDecodeError:
        raise gr.Error("The canvas sent something that is not a drawing; press Clear and draw again.") from None
    return strokes


def rectify_sketch(canvas_json, upload, class_name, mode, strength, guidance, seed, auto_strength: bool = False,
                   request: gr.Request | None = None):
    """-> (before PNG, after PNG, animated SVG HTML, info, downloads)."""
    source = _rough_input(canvas_json, upload)
    model, clf = strokes_api.load_stroke_model(), _classifier()
    name = None if class_name == "auto" else class_name
    try:
        if mode == "heal":
            res = heal(source, model, clf, name, seed=int(seed))
        else:
            res = rectify(source, model, clf, name, strength="auto" if auto_strength else float(strength),
                          guidance=float(guidance), seed=int(seed))
    except DiffSketchError as exc:
        raise _fail(exc) from None
    files = export_sketches([res.rough, res.sketch], _user_dir(request) / f"rectify-{time.time_ns()}", stem="rectify",
                            same_frame=True)
    conf = ""
    if res.confidence_before is not None:
        conf = f" Classifier's confidence in *{res.class_name}*: {res.confidence_before:.0%} before, {res.confidence_after:.0%} after."
    info = f"{'Healed' if mode == 'heal' else 'Rectified'} as **{res.class_name or 'any class'}** in {res.seconds:.1f} s " \
           f"({res.nfe} steps).{conf} {' '.join(res.notes)}"
    return files.pngs[0], files.pngs[1], _svg_grid([res.sketch]), info, [files.svgs[1], files.pngs[1], files.npz]


def _rectify_tab() -> None:
    with gr.Row():
        with gr.Column():
            canvas = gr.HTML("[]", html_template=CANVAS_HTML, css_template=CANVAS_CSS, js_on_load=CANVAS_JS,
                             elem_id="rectify-canvas")
            upload = gr.Image(label="...or upload a drawing (used instead of the canvas)", type="filepath",
                              image_mode=None, sources=["upload"], height=200)
        with gr.Column():
            cls = gr.Dropdown(["auto"] + _stroke_classes(), value="auto", label="Class (auto = ask the classifier)")
            mode = gr.Radio([("Rectify (clean up)", "rectify"), ("Heal (complete what is missing)", "heal")],
                            value="rectify", label="Mode")
            auto = gr.Checkbox(True, label="Automatic strength (the rougher the drawing, the more it is redrawn)")
            strength = gr.Slider(0.02, 1.0, value=0.3, step=0.01, label="Strength (how far from your drawing)",
                                 interactive=False)
            guidance = gr.Slider(0.0, 4.0, value=1.0, step=0.1, label="Guidance (how much it keeps your lines)")
            seed = gr.Number(0, precision=0, label="Seed")
            go = gr.Button("Rectify", variant="primary")
    info = gr.Markdown()
    with gr.Row():
        before = gr.Image(label="Before", format="png", interactive=False)
        after = gr.Image(label="After", format="png", interactive=False)
        animated = gr.HTML(label="After, animated")
    files = gr.File(label="Downloads (SVG, PNG, npz)", file_count="multiple")
    auto.change(lambda a: gr.update(interactive=not a), [auto], [strength])
    go.click(rectify_sketch, [canvas, upload, cls, mode, strength, guidance, seed, auto],
             [before, after, animated, info, files], api_name="rectify", concurrency_limit=2)


# ---------------------------------------------------------------- the app

def build_demo() -> gr.Blocks:
    with gr.Blocks(title="DiffSketch Studio", delete_cache=(3600, 86400)) as demo:
        gr.Markdown("# DiffSketch Studio\nPhotos to sketches, in classic styles or in your own, learned from one example.")
        backbone = gr.State(None)
        style_state = gr.State(None)
        source, demo_box, load, status = _backbone_panel(backbone)
        with gr.Tabs():
            with gr.Tab("Classic sketch", id="classic"):
                _classic_tab()
            with gr.Tab("Style", id="style"):
                style_banner, iterations = _style_tab(backbone, style_state)
            with gr.Tab("Photo -> Sketch", id="photo"):
                photo_banner = _photo_tab(backbone, style_state)
            if STROKES_READY:  # tabs appear only with the checkpoints they need
                with gr.Tab("Draw strokes", id="strokes"):
                    _strokes_tab()
                with gr.Tab("Rectify", id="rectify"):
                    _rectify_tab()
        load.click(load_backbone_ui, [source, demo_box], [backbone, status, style_banner, photo_banner])
        # demo mode trains in seconds: start the slider where a try-out makes sense
        demo_box.change(lambda d: gr.update(value=30 if d else 1200), [demo_box], [iterations])
        demo.unload(_cleanup)
    demo.queue(max_size=32, default_concurrency_limit=2)
    return demo


demo = build_demo()

if __name__ == "__main__":
    demo.launch(max_file_size="50mb")
