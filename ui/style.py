"""Style: one photo + the artist's sketch of it -> a trained style, with live previews, Stop, download/upload."""

from __future__ import annotations

import shutil
import threading
import time

import gradio as gr
import numpy as np

from diffsketch_core.diffusion.backbone import TINY
from diffsketch_core.errors import DiffSketchError
from diffsketch_core.jobs import JobResult, iterate_events
from diffsketch_core.perceptual import load_lpips
from diffsketch_core.style.losses import LossWeights
from diffsketch_core.style.archive import pack_style, unpack_style
from diffsketch_core.style.store import load_style
from diffsketch_core.style.training import OneShotTrainer, TrainConfig, TrainEvent

from . import common
from .classic import classic_sketch, method_choices
from .common import GPU, NEEDS_WEIGHTS, RUNNING, fail, session, user_dir


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
    photo, sketch = common.received(photo, "The photo"), common.received(sketch, "The sketch")
    if not photo or not sketch:
        raise gr.Error("Upload a photo and your sketch of it (or make a starting sketch).")
    iterations = common.as_int(iterations, "Iterations", 1, 100_000)
    key = session(request)
    if key in RUNNING:
        raise gr.Error("Training is already running in this tab; press Stop first.")
    cancel = RUNNING[key] = threading.Event()  # registered first: Stop works while the trainer is set up
    try:
        yield from _train(photo, sketch, caption, iterations, source, cancel, request)
    finally:
        RUNNING.pop(key, None)


def _trainer(photo, sketch, caption, iterations, source) -> tuple[OneShotTrainer, str]:
    demo = source == TINY
    bb = common.backbone(source)
    weights, note, lpips_model = LossWeights(), "", None
    if demo:
        try:
            lpips_model = load_lpips()
        except DiffSketchError:  # the demo runs anywhere; a real training insists on every loss
            weights, note = LossWeights(lpips=0.0), "LPIPS weights not found: demo trains without the LPIPS term. "
    cfg = TrainConfig(iterations=iterations, horizon=max(1, iterations * 5 // 6), weights=weights,
                      preview_every=max(1, iterations // 20), **({"sample_steps": 4, "gen_batch": 2} if demo else {}))
    trainer = OneShotTrainer(bb, photo, sketch, caption or "", cfg, clip=common.clip(demo), lpips_model=lpips_model)
    return trainer, note


def _train(photo, sketch, caption, iterations, source, cancel, request):
    yield "Preparing: features of your photo, text prior...", gr.skip(), gr.skip(), gr.skip(), gr.skip(), \
        gr.update(interactive=False)
    try:
        trainer, note = _trainer(photo, sketch, caption, iterations, source)
    except DiffSketchError as exc:
        raise fail(exc) from None
    yield f"Training started. {note}{' '.join(trainer.notes)}", *[gr.skip()] * 5
    try:
        for ev in iterate_events(trainer.run, cancel):
            if isinstance(ev, JobResult):
                folder = user_dir(request) / f"style-{time.time_ns()}"
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
        raise fail(exc) from None


def stop_training(request: gr.Request | None = None) -> str:
    cancel = RUNNING.get(session(request))
    if cancel is None:
        gr.Info("Nothing to stop: no training is running in this tab.")
        return gr.skip()
    cancel.set()
    return "Stopping after the current iteration..."


def upload_style(file: str | None, source: str | None, request: gr.Request | None = None) -> tuple[str, str]:
    if not file:
        raise gr.Error("Choose a style .zip to upload.")
    file = common.received(file, "The style zip")
    folder = user_dir(request) / f"uploaded-{time.time_ns()}"
    try:
        unpack_style(file, folder)
        style = load_style(folder, common.backbone(source) if source else None)
    except BaseException as exc:  # any failure, not only ours: a refused upload leaves no folder behind
        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, DiffSketchError):
            raise fail(exc) from None
        raise
    return str(folder), f"Loaded style ({style.resolution} px, caption '{style.caption}')."


def build(backbone: gr.State, style_state: gr.State) -> tuple[gr.Markdown, gr.Slider]:
    banner = gr.Markdown(NEEDS_WEIGHTS)
    with gr.Row():
        photo = gr.Image(label="Your photo", type="filepath", image_mode=None, sources=["upload", "clipboard"])
        sketch = gr.Image(label="Your sketch of it", type="filepath", image_mode=None, sources=["upload", "clipboard"])
    with gr.Row():
        choices, default = method_choices(("pidinet", "hed", "xdog"))
        start_method = gr.Radio(choices, value=default, label="Make a starting sketch with")
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
