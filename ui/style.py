"""Style: one photo + the artist's sketch of it -> a trained style, with live previews, Stop, download/upload."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np

from diffsketch_core.diffusion.backbone import TINY
from diffsketch_core.diffusion.captioner import EXAMPLE_CAPTIONER, captioner_model, shared_captioner
from diffsketch_core.diffusion.prompts import QUALITY_TAGS
from diffsketch_core.errors import DiffSketchError
from diffsketch_core.jobs import JobResult, iterate_events
from diffsketch_core.perceptual import load_lpips
from diffsketch_core.style.losses import LossWeights
from diffsketch_core.style.archive import pack_style, unpack_style
from diffsketch_core.style.soup import MAX_RUNS, Trainer
from diffsketch_core.style.store import load_style
from diffsketch_core.diffusion.taps import KINDS
from diffsketch_core.extractors import METHODS
from diffsketch_core.extractors import needs as extractor_needs
from diffsketch_core.style.sketches import guess_polarity, sketch_grey
from diffsketch_core.style.training import (ChunkPlan, OneShotTrainer, TrainConfig, TrainEvent, iteration_seconds,
                                            plan_chunks)

from . import cnn_style, common
from .classic import classic_sketch, method_choices
from .common import GPU, RUNNING, fail, session, user_dir

ZERO_GPU = os.getenv("SPACES_ZERO_GPU", "").lower() in ("1", "true")


def make_starting_sketch(photo: str | None, method: str, request: gr.Request | None = None) -> str:
    if not photo:
        raise gr.Error("Upload the photo first; the starting sketch is made from it.")
    return classic_sketch(photo, method, request)[0]


INVERT_CHOICES = [("auto", "auto"), ("keep as drawn", "no"), ("invert", "yes")]


def polarity_guess(sketch: str | None) -> str:
    """The polarity guess for the uploaded sketch, shown before training so the user can flip it."""
    if not sketch:
        return ""
    try:
        guess = guess_polarity(sketch_grey(common.received(sketch, "The sketch"))[0])
    except (DiffSketchError, gr.Error) as exc:
        return str(exc)
    return guess.describe + (" Choose *keep as drawn* below if that is wrong." if guess.invert
                             else " Choose *invert* below if it is light lines on dark paper.")


def _preview_images(event: TrainEvent) -> tuple[np.ndarray | None, np.ndarray | None]:
    if not event.preview:
        return gr.skip(), gr.skip()
    return event.preview["example"], event.preview["sample"]


CPU_ITERATIONS = 120


def iterations_for(source: str | None):
    """Where the Iterations slider starts once a backbone is loaded: the demo 30 (seconds), the CPU backbone 120
    (the one-shot benchmark's setting, about 2 minutes), Stable Diffusion 1200; unchanged when none loaded."""
    if source is None:
        return gr.update()
    return 30 if source == TINY else CPU_ITERATIONS if cnn_style.is_cnn(source) else 1200


def train_style(photo, sketch, caption, iterations, source, request: gr.Request | None = None, invert="auto",
                taps="", controlnet="", control_image="canny", control_steps=0, lora="", amalgamate=False,
                extra_seeds=0, fine_grained=False, uncond_prompt="empty", captioner="", ip_adapter="", prior=True,
                more_photos=None, runs=1):
    """Generator: yields (status, example preview, sample preview, download, style state, train button).
    `prior`: a CPU (VGG16) style starts from the sketch prior (style/cnn_prior.py); SD styles ignore it.
    `more_photos`: a CPU style's extra photos without sketches (its consistency term); SD styles ignore them.
    `runs`: a CPU style is the weight average of this many training runs (style/soup.py); SD styles ignore it.

    On a ZeroGPU Space the SD training runs as a series of short GPU calls (`_train_chunk`), each asking for the
    seconds its chunk of iterations needs; the trainer's state goes from one call to the next through this
    session's entry in TRAINING. Elsewhere one call does it all."""
    if source is None:
        raise gr.Error(common.toast(common.needs_style_weights()))
    photo, sketch = common.received(photo, "The photo"), common.received(sketch, "The sketch")
    if not photo or not sketch:
        raise gr.Error("Upload a photo and your sketch of it (or make a starting sketch).")
    iterations = common.as_int(iterations, "Iterations", 1, 100_000)
    more = common.received_files(more_photos, "Each extra photo")
    runs = common.as_int(1 if runs is None else runs, "Training runs averaged", 1, MAX_RUNS)
    key = session(request)
    if key in RUNNING:
        raise gr.Error("Training is already running in this tab; press Stop first.")
    # registered first: Stop works while the trainer is set up, and (through a file) inside a GPU worker process
    cancel = RUNNING[key] = StopFlag(user_dir(request) / f"stop-{time.time_ns()}")
    try:
        techniques = advanced_techniques(taps, controlnet, control_image, control_steps, lora, amalgamate, extra_seeds,
                                         fine_grained, uncond_prompt, ip_adapter)
        caption = caption.strip() if isinstance(caption, str) else ""
        said = ""
        if not caption and isinstance(captioner, str) and captioner.strip() and not cnn_style.is_cnn(source):
            caption = caption_photo(photo, captioner, request)  # a captioner named, the caption left empty
            said = f"Caption from the captioner (kept with the style): '{caption}'. "
            yield said, *[gr.skip()] * 5
        yield from _train(photo, sketch, caption, iterations, source, cancel, request, invert or "auto", techniques,
                          said, prior is not False, more, runs)
    finally:
        RUNNING.pop(key, None)
        TRAINING.pop(key, None)
        cancel.path.unlink(missing_ok=True)


class StopFlag:
    """Stop for a training that may run in another process (ZeroGPU forks a worker for each GPU call): an Event
    for this process and a file the worker can see."""

    def __init__(self, path):
        self.path, self._event = Path(path), threading.Event()

    def set(self) -> None:
        self._event.set()
        self.path.touch()

    def is_set(self) -> bool:
        return self._event.is_set() or self.path.exists()


# Trainer state between the GPU calls of a chunked training, per session (CPU tensors).
TRAINING: dict[str, dict] = {}


def _config(iterations: int, demo: bool, weights: LossWeights | None = None, techniques: dict | None = None) -> TrainConfig:
    return TrainConfig(iterations=iterations, horizon=max(1, iterations * 5 // 6), weights=weights or LossWeights(),
                       preview_every=max(1, iterations // 20), **({"sample_steps": 4, "gen_batch": 2} if demo else {}),
                       **(techniques or {}))


def advanced_techniques(taps, controlnet, control_image, control_steps, lora, amalgamate=False, extra_seeds=0,
                        fine_grained=False, uncond_prompt="empty", ip_adapter="") -> dict:
    """The advanced panel's choices as TrainConfig fields (all off when left empty)."""
    out: dict = {}
    if fine_grained is True:
        out["fine_grained"] = True
    uncond_prompt = common.as_choice(uncond_prompt or "empty", [v for _, v in UNCOND_CHOICES], "Unconditional half")
    if uncond_prompt != "empty":
        out["uncond_prompt"] = uncond_prompt
    if isinstance(ip_adapter, str) and ip_adapter.strip():
        out["ip_adapter"] = ip_adapter.strip()
    if isinstance(taps, str) and taps.strip():
        out["taps"] = tuple(t.strip() for t in taps.split(",") if t.strip())
    if isinstance(controlnet, str) and controlnet.strip():
        out |= dict(controlnet=controlnet.strip(), control_image=common.as_choice(control_image, list(METHODS),
                                                                                  "Control image"),
                    control_steps=common.as_int(control_steps or 0, "ControlNet steps", 0, 50))
    if isinstance(lora, str) and lora.strip():
        out["lora"] = lora.strip()
    if amalgamate is True:
        out |= dict(amalgamate=True, extra_seeds=common.as_int(extra_seeds or 0, "Extra seeds", 0, 4))
    return out


UNCOND_CHOICES = [("empty prompt (DiffSketch)", "empty"), ("quality tags", "tags"),
                  ("the prompt (GATE literally)", "prompt")]


def caption_photo(photo, captioner, request: gr.Request | None = None) -> str:
    """The Caption button: the named captioner's caption of the photo (loaded on the CPU, once per source)."""
    photo = common.received(photo, "The photo")
    if not photo:
        raise gr.Error("Upload the photo first; the caption is written from it.")
    source = captioner.strip() if isinstance(captioner, str) else ""
    if not source:
        raise gr.Error(f"Name a captioner first (hub id or folder, e.g. {EXAMPLE_CAPTIONER}) in the advanced panel.")
    try:
        from diffsketch_core.images import load_image

        text = shared_captioner(source, "cpu").caption(load_image(photo).image)
    except DiffSketchError as exc:
        raise fail(exc) from None
    if not text:
        raise gr.Error("The captioner gave no readable caption; type one instead.")
    return text


def techniques_status() -> str:
    """What each technique of the advanced panel needs, and whether it can run here now."""
    ready = [m for m in METHODS if extractor_needs(m) is None]
    return "\n".join([
        "| technique | what it does | needs | here |", "|---|---|---|---|",
        "| Feature taps | any activation as a feature: `path:kind`, kinds " + ", ".join(f"`{k}`" for k in KINDS[:-1])
        + " | nothing | ready |",
        "| ControlNet (GATE) | the photo's edges steer the extraction forward back to the photo | a diffusers "
        "ControlNet for SD 1.x (hub id or folder; `tiny` with the demo backbone) | control images: "
        + (", ".join(ready) or "none") + " |",
        "| LoRA (GATE) | a LoRA tuned on images like yours, merged while features are extracted | a `.safetensors` "
        "LoRA (file, folder or hub id) | when given |",
        "| Amalgamation (GATE) | plain, ControlNet, LoRA and extra-seed features as separate sources mixed by "
        "learned per-channel weights (each source costs one more extraction) | two sources at least | ready |",
        f"| Fine-grained prompt (GATE) | the caption + '{QUALITY_TAGS}'; the unconditional half with the empty prompt "
        "(DiffSketch), the quality tags alone, or the prompt itself; kept with the style | nothing | ready |",
        "| IP-Adapter (GATE) | the image's own CLIP embedding steers the extraction forward (one image-encoder "
        "pass per image, no extra UNet pass) | `h94/IP-Adapter` or a folder with `ip-adapter_sd15.safetensors` and "
        "`image_encoder/` (`tiny` with the demo backbone) | when given |",
        "| Captioner | writes the caption from the photo (*Caption the photo*, or at Train when the caption is empty) "
        f"| an image-captioning model (hub id or folder, e.g. `{EXAMPLE_CAPTIONER}`) | when given |"])


def _cost_shape(source: str) -> tuple[int, str]:
    """(training resolution, family) of a loaded backbone for the first GPU estimate: SD 2.1 trains at 768 and
    SDXL at 1024 with a heavier UNet, so an estimate at SD 1.x's 512 px would ask for far too few seconds."""
    if source == TINY:
        return 128, "sd1"
    try:
        bb = common.backbone(source)  # already loaded by the Backbone panel: the cache answers
    except Exception:  # noqa: BLE001 - not loadable: the training itself will say why; estimate as SD 1.x
        return 512, "sd1"
    return bb.resolution, bb.family


def _plan(iterations: int, source: str, per_iteration: float | None = None, techniques: dict | None = None) -> ChunkPlan:
    cfg = _config(iterations, source == TINY, techniques=techniques)
    if not ZERO_GPU:  # one call; the plan still says what a GPU Space would ask for
        return ChunkPlan([iterations], [0])
    per = per_iteration or iteration_seconds(cfg, *_cost_shape(source))
    return plan_chunks(iterations, per, multiple=cfg.gen_batch)


def gpu_estimate(iterations, source) -> str:
    """What a training of this many iterations asks of a ZeroGPU Space, said before it starts."""
    if source is None or cnn_style.is_cnn(source):
        return ""
    try:
        iterations = common.as_int(iterations, "Iterations", 1, 100_000)
    except gr.Error:
        return ""
    cfg = _config(iterations, source == TINY)
    plan = plan_chunks(iterations, iteration_seconds(cfg, *_cost_shape(source)), multiple=cfg.gen_batch)
    where = "This Space" if ZERO_GPU else "On a ZeroGPU Space this training"
    return (f"{where} asks for about {plan.total_seconds} GPU-seconds in {len(plan.chunks)} call(s) of at most "
            f"{max(plan.seconds)} s (first estimate; later calls use the measured speed).")


def _trainer(photo, sketch, caption, iterations, source, invert="auto", techniques=None,
             prior=True, more=(), runs=1) -> tuple[Trainer, str]:
    if cnn_style.is_cnn(source):  # issue 13: CPU backbone, no caption or CLIP needed
        trainer = cnn_style.trainer(photo, sketch, iterations, source, invert, prior, more, runs)
        said = "Starting from the sketch prior. " if trainer.prior else ""
        if trainer.unlabeled:
            said += f"{len(trainer.unlabeled)} extra photo(s) teach the style what it need not guess. "
        if runs > 1:
            said += f"{runs} runs of {iterations} iterations, averaged into one style. "
        return trainer, said
    demo = source == TINY
    bb = common.backbone(source)
    weights, note, lpips_model = LossWeights(), "", None
    if demo:
        try:
            lpips_model = load_lpips()
        except DiffSketchError:  # the demo runs anywhere; a real training insists on every loss
            weights, note = LossWeights(lpips=0.0), "LPIPS weights not found: demo trains without the LPIPS term. "
    cfg = _config(iterations, demo, weights, techniques)
    trainer = OneShotTrainer(bb, photo, sketch, caption or "", cfg, clip=common.clip(demo), lpips_model=lpips_model,
                             invert=invert)
    return trainer, note


class _ChunkEnd:
    def __init__(self, state, iteration: int, per_iteration: float | None, finished: bool):
        self.state, self.iteration, self.per_iteration, self.finished = state, iteration, per_iteration, finished


def _chunk_seconds(job: dict) -> int:
    return int(job["seconds"]) or 60


@GPU(duration=_chunk_seconds)
def _train_chunk(job: dict):
    """One GPU call: build the trainer from the job's inputs, restore the state of the previous call, train to
    job["until"], yield UI updates, save the style when training ends (done or stopped), and last a _ChunkEnd."""
    cancel = StopFlag(job["stop"])
    try:
        trainer, note = _trainer(job["photo"], job["sketch"], job["caption"], job["iterations"], job["source"],
                                 job["invert"], job["techniques"], job.get("prior", True), job.get("more", []),
                                 job.get("runs", 1))
    except DiffSketchError as exc:
        raise fail(exc) from None
    if job["state"] is not None:
        trainer.load_state_dict(job["state"])
    else:
        yield f"Training started. {note}{' '.join(trainer.notes)}", *[gr.skip()] * 5
    first, per_iteration = trainer.iteration, None
    until = job["until"] if hasattr(trainer, "state_dict") else None  # the CNN trainer runs in one go
    run = (lambda on_event, c: trainer.run(on_event, c, until=until)) if until is not None else trainer.run
    try:
        for ev in iterate_events(run, cancel):
            if isinstance(ev, JobResult):
                finished = cancel.is_set() or trainer.iteration >= job["iterations"]
                if finished:
                    folder = Path(job["folder"])
                    ev.value.save(folder)
                    zipped = pack_style(folder, folder.with_suffix(".zip"))
                    stopped = "stopped early" if cancel.is_set() else "done"
                    msg = (f"Training {stopped} after {trainer.iteration} iterations. "
                           "The style is ready in Photo -> Sketch.")
                    yield msg, gr.skip(), gr.skip(), str(zipped), str(folder), gr.update(interactive=True)
                state = trainer.state_dict() if not finished and hasattr(trainer, "state_dict") else None
                yield _ChunkEnd(state, trainer.iteration, per_iteration, finished)
            elif ev.kind in ("step", "preview"):
                done = ev.iteration - first
                per_iteration = ev.seconds / max(done, 1)
                loss = ev.losses.get("total", float("nan"))
                eta = per_iteration * (ev.total - ev.iteration)
                msg = f"Iteration {ev.iteration}/{ev.total}, loss {loss:.3f}, about {eta:.0f} s left."
                ex, sa = _preview_images(ev)
                yield msg, ex, sa, gr.skip(), gr.skip(), gr.skip()
    except DiffSketchError as exc:
        raise fail(exc) from None


def _train(photo, sketch, caption, iterations, source, cancel, request, invert="auto", techniques=None, said="",
           prior=True, more=(), runs=1):
    """`said`: what the status line already tells (the captioner's caption), kept in front of "Preparing"."""
    plan = _plan(iterations, source, techniques=techniques)
    asks = f" This run asks for about {plan.total_seconds} GPU-seconds in {len(plan.chunks)} calls." if ZERO_GPU else ""
    yield f"{said}Preparing: features of your photo, text prior...{asks}", gr.skip(), gr.skip(), gr.skip(), gr.skip(), \
        gr.update(interactive=False)
    key = session(request)
    job = dict(photo=photo, sketch=sketch, caption=caption or "", iterations=iterations, source=source,
               invert=invert, techniques=techniques or {}, prior=prior, more=list(more), runs=runs,
               stop=str(cancel.path),
               folder=str(user_dir(request) / f"style-{time.time_ns()}"), state=None, until=0, seconds=0)
    done = 0
    while True:
        job.update(until=done + plan.chunks[0], seconds=plan.seconds[0], state=TRAINING.get(key))
        end = None
        for item in _train_chunk(job):
            if isinstance(item, _ChunkEnd):
                end = item
            else:
                yield item
        if end is None or end.finished:
            return
        # a Stop pressed between two calls is seen by the next one at once, which then saves the style
        TRAINING[key], done = end.state, end.iteration
        plan = _plan(iterations - done, source, end.per_iteration, techniques)  # re-planned with the measured speed


def stop_training(request: gr.Request | None = None) -> str:
    return common.stop_job(session(request), "no training is running in this tab.",
                           "Stopping after the current iteration...")


def upload_style(file: str | None, source: str | None, request: gr.Request | None = None) -> tuple[str, str]:
    if not file:
        raise gr.Error("Choose a style .zip to upload.")
    file = common.received(file, "The style zip")
    folder = user_dir(request) / f"uploaded-{time.time_ns()}"
    try:
        unpack_style(file, folder)
        style = load_style(folder, cnn_style.any_backbone(source) if source else None)
    except BaseException as exc:  # any failure, not only ours: a refused upload leaves no folder behind
        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, DiffSketchError):
            raise fail(exc) from None
        raise
    return str(folder), f"Loaded style ({style.resolution} px, caption '{style.caption}')."


# ---- issue 14: distil the loaded style into a small student (Photo -> Sketch's "Fast (student)")
DISTIL_STEP_S = 2.0  # measured: one training step (batch 4, 256 px crops) on this project's 2-core CPU


def distil_estimate(files, steps) -> str:
    n = len(files) if isinstance(files, list) else 0
    try:
        steps = common.as_int(steps, "Steps", 10, 20_000)
    except gr.Error:
        return ""
    return (f"Takes one style pass per photo ({n} photo(s); the style's own speed), then about "
            f"{steps * DISTIL_STEP_S / 60:.0f} min of student training on a 2-core CPU. Stop keeps nothing half-done.")


def distil_style(files, steps, style_dir, source, request: gr.Request | None = None):
    """Generator: yields (status, download, style state). The style teaches a student on the uploaded photos;
    the student goes into the style folder (and its zip), where Photo -> Sketch's Fast switch finds it."""
    from diffsketch_core.style import distill
    from diffsketch_core.style.photo2sketch import PhotoToSketch
    from diffsketch_core.style.student import attach_student

    if source is None:
        raise gr.Error(common.toast(common.needs_style_weights()))
    if not style_dir:
        raise gr.Error("No style yet: train one above or upload a saved style first.")
    files = common.received_files(files, "Each photo")
    if not files:
        raise gr.Error("Upload some photos to distil from (10-50 of the kind you will sketch).")
    steps = common.as_int(steps, "Steps", 10, 20_000)
    key = session(request) + "/distil"
    if key in RUNNING:
        raise gr.Error("A distillation is already running in this tab; press Stop first.")
    cancel = RUNNING[key] = threading.Event()
    try:
        yield "Loading the style...", gr.skip(), gr.skip()
        try:
            if cnn_style.is_cnn(source):
                sketcher = cnn_style.model(style_dir, source)
            else:
                bb = common.backbone(source)
                sketcher = PhotoToSketch(load_style(style_dir, bb), bb)
            lpips_net = load_lpips()
            cfg = distill.TrainConfig(steps=steps, batch=4, crop=256, save_every=max(50, steps // 5))
        except DiffSketchError as exc:
            raise fail(exc) from None
        work = user_dir(request) / f"distil-{time.time_ns()}"
        run = lambda on_event, c: distill.distill([Path(f) for f in files], distill.sketcher_teacher(sketcher), work,
                                                  cfg, [512], on_event, c, lpips_net)  # noqa: E731
        t0 = time.time()
        for ev in iterate_events(run, cancel):
            if isinstance(ev, JobResult):
                summary = ev.value
                skipped = f" {len(summary['failed'])} photo(s) skipped: {'; '.join(summary['failed'][:3])}." \
                    if summary["failed"] else ""
                if summary["student"] is None:
                    yield f"Stopped; no student was made.{skipped}", gr.skip(), gr.skip()
                    return
                attach_student(style_dir, summary["student"])
                zipped = pack_style(style_dir, Path(style_dir).with_suffix(".zip"))
                yield (f"Student ready after {summary['step']} steps ({time.time() - t0:.0f} s). Tick *Fast (student)* "
                       f"in Photo -> Sketch; the style download now carries it.{skipped}"), str(zipped), style_dir
            elif ev["kind"] == "cache":
                per = ev["seconds"] / ev["done"]
                left = per * (ev["total"] - ev["done"]) + steps * DISTIL_STEP_S
                yield f"Style sketches of the photos: {ev['done']}/{ev['total']}, about {left:.0f} s left.", \
                    gr.skip(), gr.skip()
            else:
                left = (time.time() - t0) / max(ev["step"], 1) * (ev["total"] - ev["step"]) if ev["step"] else 0
                yield (f"Training the student: step {ev['step']}/{ev['total']}, loss {ev['loss']:.3f}, "
                       f"about {left:.0f} s left."), gr.skip(), gr.skip()
    except DiffSketchError as exc:
        raise fail(exc) from None
    finally:
        RUNNING.pop(key, None)


def stop_distil(request: gr.Request | None = None) -> str:
    return common.stop_job(session(request) + "/distil", "no distillation is running in this tab.",
                           "Stopping after the current step...")


def build(backbone: gr.State, style_state: gr.State) -> tuple[gr.Markdown, gr.Slider]:
    banner = gr.Markdown(common.needs_style_weights())
    with gr.Row():
        photo = gr.Image(label="Your photo", type="filepath", image_mode=None, sources=["upload", "clipboard"])
        sketch = gr.Image(label="Your sketch of it", type="filepath", image_mode=None, sources=["upload", "clipboard"])
    with gr.Row():
        choices, default = method_choices(("pidinet", "hed", "xdog"))
        start_method = gr.Radio(choices, value=default, label="Make a starting sketch with")
        make = gr.Button("Make starting sketch")
    with gr.Row():
        caption = gr.Textbox(label="Caption: what the photo shows (empty: 'a photo'; kept with the style)",
                             placeholder="a photo of a horse in mud")
        iterations = gr.Slider(2, 1500, value=1200, step=1, label="Iterations")
    with gr.Row():
        polarity = gr.Markdown()
        invert = gr.Radio(INVERT_CHOICES, value="auto", label="Sketch polarity",
                          info="auto: the guess shown; keep: dark lines on light paper as drawn; invert: flip it")
    prior = gr.Checkbox(True, label="CPU styles: start from the sketch prior",
                        info="learnt from people's contour drawings of 297 photos: better for outline styles; untick "
                             "it for tonal styles that fill dark areas (XDoG-like). Stable Diffusion styles ignore it.")
    more_photos = gr.File(
        file_count="multiple", file_types=["image"], elem_id="style-more-photos",
        label="CPU styles, optional: more photos of the kind you will sketch, no sketches needed (up to 32; each "
              "makes the style draw the same lines on a photo and its mirror image; about 1.5x the training time)")
    runs = gr.Slider(1, MAX_RUNS, value=1, step=1, elem_id="style-runs",
                     label="CPU styles: training runs averaged into the style (a model soup)",
                     info="each run trains all the iterations from the same start with another seed and the weights "
                          "are averaged: the style depends less on chance (3 runs: LPIPS 0.215 -> 0.208 over the "
                          "benchmark's 9 styles) for N times the training; applying it costs the same. Stable "
                          "Diffusion styles ignore it.")
    gpu_note = gr.Markdown()
    with gr.Accordion("Advanced: diffusion feature techniques (off by default)", open=False):
        gr.Markdown(techniques_status())
        adv_taps = gr.Textbox(label="UNet taps (comma-separated; empty: DiffSketch's 12 decoder resnets)",
                              placeholder="up_blocks.1.resnets.0:res-out, up_blocks.1.attentions.0:self-q")
        with gr.Row():
            adv_controlnet = gr.Textbox(label="ControlNet (hub id or folder; empty: off)")
            adv_control_image = gr.Radio(list(METHODS), value="canny", label="Control image from")
            adv_control_steps = gr.Slider(0, 20, value=0, step=1, label="GATE guided steps before extracting")
        adv_lora = gr.Textbox(label="LoRA (.safetensors file, folder or hub id; empty: off)")
        adv_ip = gr.Textbox(label="IP-Adapter (h94/IP-Adapter or a folder with ip-adapter_sd15.safetensors and "
                                  "image_encoder/; empty: off)")
        with gr.Row():
            adv_amalgamate = gr.Checkbox(False, label="Amalgamate the sources (learned weight assigners)")
            adv_seeds = gr.Slider(0, 4, value=0, step=1, label="Extra seed sources")
        with gr.Row():
            adv_fine = gr.Checkbox(False, label="Fine-grained prompt: the caption + quality tags (needs nothing)")
            adv_uncond = gr.Radio(UNCOND_CHOICES, value="empty", label="Unconditional half extracted with")
        with gr.Row():
            adv_captioner = gr.Textbox(captioner_model() or "", label="Captioner (hub id or folder of an image-"
                                       f"captioning model, e.g. {EXAMPLE_CAPTIONER}; empty: off)")
            adv_caption = gr.Button("Caption the photo")
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
    with gr.Accordion("Distil this style: a fast student for Photo -> Sketch", open=False):
        distil_files = gr.File(label="Photos to distil from", file_count="multiple", file_types=["image"])
        distil_steps = gr.Slider(10, 3000, value=600, step=10, label="Student training steps")
        distil_note = gr.Markdown(distil_estimate([], 600))
        with gr.Row():
            distil = gr.Button("Distil this style", elem_id="style-distil")
            distil_stop = gr.Button("Stop distilling", variant="stop")
        distil_status = gr.Markdown(elem_id="style-distil-status")
    make.click(make_starting_sketch, [photo, start_method], [sketch])
    adv_caption.click(caption_photo, [photo, adv_captioner], [caption])
    sketch.change(polarity_guess, [sketch], [polarity])
    for trigger in (iterations.change, backbone.change):
        trigger(gpu_estimate, [iterations, backbone], [gpu_note])
    train.click(train_style, [photo, sketch, caption, iterations, backbone, invert, adv_taps, adv_controlnet,
                              adv_control_image, adv_control_steps, adv_lora, adv_amalgamate, adv_seeds, adv_fine,
                              adv_uncond, adv_captioner, adv_ip, prior, more_photos, runs],
                [status, prev_ex, prev_sa, download, style_state, train], concurrency_limit=1,
                concurrency_id="gpu", trigger_mode="once", show_progress_on=status)
    stop.click(stop_training, None, [status], concurrency_limit=None)
    upload.upload(upload_style, [upload, backbone], [style_state, upload_status])
    for trigger in (distil_files.change, distil_steps.change):
        trigger(distil_estimate, [distil_files, distil_steps], [distil_note])
    distil.click(distil_style, [distil_files, distil_steps, style_state, backbone], [distil_status, download, style_state],
                 concurrency_limit=1, concurrency_id="gpu", trigger_mode="once", show_progress_on=distil_status)
    distil_stop.click(stop_distil, None, [distil_status], concurrency_limit=None)
    return banner, iterations
