"""Sketch -> Picture: a sketch (uploaded, or handed over from Rectify or Draw strokes) and a prompt become pictures
that keep its lines: Stable Diffusion steered by a scribble ControlNet and/or DiffSketching's sketch guidance."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import gradio as gr
from PIL import Image, ImageDraw

from diffsketch_core import settings
from diffsketch_core.diffusion.backbone import TINY
from diffsketch_core.errors import DiffSketchError
from diffsketch_core.jobs import JobResult, iterate_events
from diffsketch_core.perceptual import load_lpips, lpips_needs
from diffsketch_core.picture import extractor as sketch_extractors
from diffsketch_core.picture.controlnet import ZERO_INIT, controlnet_source, load_controlnet
from diffsketch_core.picture.lora import LoRA
from diffsketch_core.picture.sketch2image import PictureConfig, sketch_to_image

from . import common
from .canvas import CANVAS_SIZE, strokes_from_value
from .common import GPU, NEEDS_WEIGHTS, RUNNING, fail, output_dir, session, toast, user_dir

NEEDS = (f"**What it needs:** Stable Diffusion 1.x (the *Backbone* panel, or the demo backbone); for the ControlNet, "
         f"a scribble or lineart SD-1.5 ControlNet (hub id or local folder below, or `{settings.CONTROLNET_ENV}`); for "
         f"sketch guidance, the HED weights (`{settings.WEIGHTS_DIR_ENV}`). With real weights on a CPU a 512 px "
         "picture takes many minutes; a GPU does it in seconds.")


def _key(request) -> str:
    return f"{session(request)}:picture"  # not the Style tab's key: each tab's Stop stops only its own job


def _extractor(bb, demo: bool, notes: list[str]):
    why = sketch_extractors.needs("hed")
    if why is None:
        return sketch_extractors.load_extractor("hed", bb.device)
    if not demo:
        raise gr.Error(f"Sketch guidance needs HED: {why} Or set Sketch guidance to 0.")
    notes.append("HED weights not found: the demo guides with a tiny random extractor.")
    return sketch_extractors.load_extractor("tiny")


def _steering(bb, demo, use_control, control_source, sketch_scale, lpips_weight, notes):
    control = None
    if use_control:
        source = ZERO_INIT if demo else (control_source or "").strip() or None
        control = load_controlnet(bb, source)
        if control.is_zero_init:
            notes.append("Demo ControlNet: zero-initialised from the demo UNet, so it changes nothing.")
    extractor, lpips_model = None, None
    if sketch_scale > 0 or lpips_weight > 0:
        extractor = _extractor(bb, demo, notes)
    if lpips_weight > 0:
        why = lpips_needs()
        if why is not None:
            raise gr.Error(f"The LPIPS term needs its weights: {why} Or set its weight to 0.")
        lpips_model = load_lpips(bb.device)
    return control, extractor, lpips_model


@GPU(duration=300)
def generate_pictures(sketch, prompt, negative, use_control, control_source, control_scale, sketch_scale, lpips_weight,
                      strength, steps, cfg, seed, width, height, count, lora_file, source,
                      request: gr.Request | None = None):
    """Generator: yields (status, pictures gallery, their sketches gallery, downloads)."""
    if source is None:
        raise gr.Error(toast(NEEDS_WEIGHTS))
    if not sketch:
        raise gr.Error("No sketch yet: upload one, or send one from Rectify or Draw strokes.")
    key = _key(request)
    if key in RUNNING:
        raise gr.Error("Pictures are already being made in this tab; press Stop first.")
    cancel = RUNNING[key] = threading.Event()
    try:
        yield "Loading the models...", gr.skip(), gr.skip(), gr.skip()
        notes: list[str] = []
        try:
            bb = common.backbone(source)
        except DiffSketchError as exc:  # e.g. the CPU (VGG16) backbone kind, which draws no pictures
            raise gr.Error(f"Sketch -> Picture needs Stable Diffusion 1.x or the demo backbone: {exc}") from None
        try:
            control, extractor, lpips_model = _steering(bb, source == TINY, use_control, control_source,
                                                        float(sketch_scale), float(lpips_weight), notes)
            config = PictureConfig(prompt or "", negative or "", int(steps), float(cfg), int(seed), int(count),
                                   int(width) or None, int(height) or None, float(strength), float(control_scale),
                                   float(sketch_scale), lpips=float(lpips_weight))
            lora = LoRA.load(lora_file) if lora_file else None
            job = lambda on_event, stop: sketch_to_image(bb, sketch, config, controlnet=control,  # noqa: E731
                                                         extractor=extractor, lpips_model=lpips_model, lora=lora,
                                                         on_event=on_event, cancel=stop)
            for ev in iterate_events(job, cancel):
                if isinstance(ev, JobResult):
                    yield _finish(ev.value, notes, request)
                else:
                    what = "guided step" if ev.guided else "step"
                    left = ev.seconds / ev.step * (ev.total - ev.step)
                    yield f"Step {ev.step}/{ev.total} ({what}), about {left:.0f} s left.", gr.skip(), gr.skip(), gr.skip()
        except DiffSketchError as exc:
            raise fail(exc) from None
    finally:
        RUNNING.pop(key, None)


def _finish(res, notes, request):
    if res.cancelled:
        return "Stopped.", gr.skip(), gr.skip(), gr.skip()
    folder = user_dir(request) / f"pictures-{time.time_ns()}"
    folder.mkdir()
    paths = []
    for k, img in enumerate(res.images):
        img.save(folder / f"picture-{k}.png")
        paths.append(str(folder / f"picture-{k}.png"))
    sketches = []
    for k, img in enumerate(res.sketches):
        img.save(folder / f"picture-{k}-sketch.png")
        sketches.append(str(folder / f"picture-{k}-sketch.png"))
    c = res.cost
    fidelity = ""
    if res.sketch_loss:
        fidelity = " Sketch loss to yours (lower = closer): " + ", ".join(f"{v:.3f}" for v in res.sketch_loss) + "."
    msg = (f"{len(paths)} picture(s), {res.size[0]}x{res.size[1]} px, in {c.seconds:.1f} s: {c.unet_calls} UNet calls, "
           f"{c.controlnet_calls} ControlNet calls, {c.extractor_backwards} guidance steps.{fidelity} "
           + " ".join(notes + res.notes))
    return msg.strip(), paths, sketches, paths + sketches


def stop_pictures(request: gr.Request | None = None):
    return common.stop_job(_key(request), "no pictures are being made in this tab.", "Stopping after the current step...")


# ---------------------------------------------------------------- hand-over from the stroke tabs

def canvas_png(canvas_json: str | None, path) -> str | None:
    """The Rectify canvas's strokes drawn as the canvas shows them (dark, 4 px, on white), or None when empty.
    The value is typed by the canvas's own boundary check (a string is never a path)."""
    strokes = strokes_from_value(canvas_json or "[]")
    if not strokes:
        return None
    img = Image.new("L", (CANVAS_SIZE, CANVAS_SIZE), 255)
    draw = ImageDraw.Draw(img)
    for line in strokes:
        points = [tuple(map(float, p)) for p in line]
        if len(points) == 1:
            points = points * 2
        draw.line(points, fill=17, width=4, joint="curve")
    img.save(path)
    return str(path)


def from_rectify(after, upload, canvas_json, request: gr.Request | None = None):
    """The rectified result when there is one, else the uploaded drawing, else the canvas."""
    # `after` and `upload` come through Gradio's pre-processing, which opens only files the app received
    picked = after if after is not None else upload or canvas_png(canvas_json, output_dir(request, "canvas") / "canvas.png")
    if picked is None:
        raise gr.Error("Nothing to send yet: draw on the canvas (or upload a drawing) first.")
    return picked, gr.Tabs(selected="picture")


def from_strokes(gallery):
    if not gallery:
        raise gr.Error("Nothing to send yet: draw some sketches first.")
    first = gallery[0]
    return (first[0] if isinstance(first, (tuple, list)) else first), gr.Tabs(selected="picture")


@dataclass
class PictureTab:
    banner: gr.Markdown
    sketch: gr.Image
    steps: gr.Slider


def handover(tabs: gr.Tabs, tab: PictureTab, rectify_parts=None, strokes_parts=None) -> None:
    """Wire the 'Send to Sketch -> Picture' buttons: rectify_parts = (button, after, upload, canvas),
    strokes_parts = (button, gallery)."""
    if rectify_parts is not None:
        button, after, upload, canvas = rectify_parts
        button.click(from_rectify, [after, upload, canvas], [tab.sketch, tabs])
    if strokes_parts is not None:
        button, gallery = strokes_parts
        button.click(from_strokes, [gallery], [tab.sketch, tabs])


def build(backbone: gr.State) -> PictureTab:
    banner = gr.Markdown(NEEDS_WEIGHTS)
    gr.Markdown(NEEDS)
    hed_ready = sketch_extractors.needs("hed") is None
    with gr.Row():
        with gr.Column():
            sketch = gr.Image(label="Your sketch", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                              elem_id="picture-sketch", height=300)
            prompt = gr.Textbox(label="Prompt: what the picture shows", placeholder="a cottage in a meadow, watercolour")
            negative = gr.Textbox(label="Negative prompt (optional)", placeholder="blurry, low quality")
        with gr.Column():
            with gr.Accordion("Steering", open=True):
                use_control = gr.Checkbox(False, label="ControlNet (scribble / lineart)")
                control_source = gr.Textbox(controlnet_source(), label="ControlNet hub id or local folder")
                control_scale = gr.Slider(0, 2, value=1.0, step=0.05, label="ControlNet strength")
                sketch_scale = gr.Slider(0, 5, value=1.0 if hed_ready else 0.0, step=0.1,
                                         label="Sketch guidance (DiffSketching; 0 = off)",
                                         info="Steps each picture toward your lines by the gradient of a chamfer loss "
                                              "between its HED sketch and yours." + ("" if hed_ready else
                                              " HED weights are missing here: " + sketch_extractors.needs("hed")))
                lpips_weight = gr.Slider(0, 2, value=0.0, step=0.1, label="LPIPS weight in the sketch loss")
                lora_file = gr.File(label="Fine-tuned LoRA (optional; python -m diffsketch_core.picture.finetune)",
                                    file_types=[".safetensors"], height=90)
            strength = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Strength (1 = from noise; less = start from your sketch)")
            with gr.Row():
                steps = gr.Slider(1, 100, value=30, step=1, label="Steps")
                cfg = gr.Slider(1, 15, value=7.5, step=0.5, label="Prompt guidance (CFG)")
            with gr.Row():
                seed = gr.Number(0, precision=0, label="Seed")
                count = gr.Slider(1, 4, value=1, step=1, label="Pictures")
            with gr.Row():
                width = gr.Number(0, precision=0, label="Width (0 = native)")
                height = gr.Number(0, precision=0, label="Height (0 = native)")
            with gr.Row():
                go = gr.Button("Generate", variant="primary")
                stop = gr.Button("Stop", variant="stop")
    status = gr.Markdown()
    with gr.Row():
        gallery = gr.Gallery(label="Pictures", format="png", columns=2, height=320)
        sketches = gr.Gallery(label="Their sketches (HED), to compare with yours", format="png", columns=2, height=320)
    files = gr.File(label="Downloads (PNG)", file_count="multiple")
    go.click(generate_pictures, [sketch, prompt, negative, use_control, control_source, control_scale, sketch_scale,
                                 lpips_weight, strength, steps, cfg, seed, width, height, count, lora_file, backbone],
             [status, gallery, sketches, files], api_name="sketch_to_picture", concurrency_limit=1,
             concurrency_id="gpu", trigger_mode="once", show_progress_on=gallery)
    stop.click(stop_pictures, None, [status], concurrency_limit=None)
    return PictureTab(banner, sketch, steps)
