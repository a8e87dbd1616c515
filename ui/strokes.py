"""Draw strokes: vector sketches of a class (or any) from the stroke diffusion model, with its samplers."""

from __future__ import annotations

import gradio as gr

from diffsketch_core.budgets import MAX_DDPM_SKETCHES, REQUEST_SECONDS
from diffsketch_core.errors import DiffSketchError
from diffsketch_core.jobs import Deadline
from diffsketch_core.strokes.export import export as export_sketches
from diffsketch_core.strokes.generate import generate
from diffsketch_core.strokes.guidance import RATE as GUIDE_RATE

from .common import (SKIP_READY, as_choice, as_float, as_int, as_seed, fail, output_dir, stroke_classes, svg_grid,
                     while_connected)

MAX_COUNT = 16

SAMPLER_LABELS = {"skip": "Fast: recognizability skipping", "schedule": "Fast: precomputed r(t) schedule",
                  "ddim": "DDIM, 30 steps", "ddpm": "Full: DDPM, 1000 steps"}


CLASSIFIER_GUIDANCE_LABEL = "Recognisability guidance"
CLASSIFIER_GUIDANCE_INFO = ("Pulls each sketch toward what the sketch classifier recognises as its class (0 = off: "
                            "freer, more often a scribble).")


def draw_strokes(class_name: str, count: float, sampler: str, seed: float, request: gr.Request | None = None,
                 classifier_guidance: float = GUIDE_RATE):
    """-> (gallery PNGs, animated SVG preview HTML, info, download files)."""
    if not isinstance(class_name, str):
        raise gr.Error("Class must be the name of a class.")
    sampler = as_choice(sampler, list(SAMPLER_LABELS), "Sampler")
    count = as_int(count, "How many", 1, MAX_COUNT)
    classifier_guidance = as_float(classifier_guidance, CLASSIFIER_GUIDANCE_LABEL, 0.0, 0.3)
    if sampler == "ddpm" and count > MAX_DDPM_SKETCHES:
        raise gr.Error(f"The full sampler (1000 steps) draws at most {MAX_DDPM_SKETCHES} sketches per request here; "
                       "ask for fewer or choose a faster sampler.")
    try:
        with while_connected(request) as left:
            gen = generate(None if class_name == "any" else class_name, count, sampler, seed=as_seed(seed),
                           classifier_guidance=classifier_guidance, cancel=Deadline(REQUEST_SECONDS["draw_strokes"], "Drawing", also=left))
    except DiffSketchError as exc:
        raise fail(exc) from None
    files = export_sketches(gen.sketches, output_dir(request, "strokes"), stem=class_name)
    per = gen.seconds / len(gen.sketches)
    info = (f"{len(gen.sketches)} sketch(es) of **{class_name}** with *{SAMPLER_LABELS[sampler]}*: "
            f"{gen.nfe} network evaluations per sketch, {gen.seconds:.2f} s in all ({per:.3f} s per sketch)"
            + (f", recognisability guidance {gen.classifier_guidance:g}." if gen.classifier_guidance else "."))
    return files.pngs, svg_grid(gen.sketches), info, [files.zip, files.npz] + files.svgs


def build() -> tuple[gr.Button, gr.Gallery]:
    """-> the hand-over to Sketch -> Picture: (its button, the gallery); app.py wires it."""
    samplers = [k for k in SAMPLER_LABELS if SKIP_READY or k not in ("skip", "schedule")]
    with gr.Row():
        with gr.Column(scale=1):
            cls = gr.Dropdown(["any"] + stroke_classes(), value="any", label="Class")
            count = gr.Slider(1, MAX_COUNT, value=4, step=1, label="How many")
            sampler = gr.Radio([(SAMPLER_LABELS[k], k) for k in samplers], value=samplers[0], label="Sampler")
            seed = gr.Number(0, precision=0, label="Seed")
            cg = gr.Slider(0.0, 0.3, value=GUIDE_RATE, step=0.01, label=CLASSIFIER_GUIDANCE_LABEL,
                           info=CLASSIFIER_GUIDANCE_INFO)
            go = gr.Button("Draw", variant="primary")
        with gr.Column(scale=2):
            info = gr.Markdown()
            preview = gr.HTML(label="Animated preview")
            gallery = gr.Gallery(label="Sketches", format="png", columns=4, height=260)
            files = gr.File(label="Downloads (zip, npz, SVG)", file_count="multiple")
            send = gr.Button("Send the first sketch to Sketch -> Picture")
    go.click(draw_strokes, [cls, count, sampler, seed, cg], [gallery, preview, info, files], api_name="draw_strokes",
             concurrency_limit=2, show_progress_on=gallery)
    return send, gallery
