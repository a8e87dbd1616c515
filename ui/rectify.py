"""Rectify / heal: a drawing from the canvas (stroke order kept) or an upload, pulled toward a clean sketch of
its class (rectify) or completed (heal)."""

from __future__ import annotations

import gradio as gr

from diffsketch_core.budgets import REQUEST_SECONDS
from diffsketch_core.errors import DiffSketchError
from diffsketch_core.jobs import Deadline
from diffsketch_core.perceptual import lpips_needs
from diffsketch_core.strokes import loaders as stroke_loaders
from diffsketch_core.strokes.export import export as export_sketches
from diffsketch_core.strokes.rectify import RECTIFY_CLASSIFIER_GUIDANCE, heal, rectify

from . import canvas as canvas_component
from .common import (as_choice, as_float, as_seed, fail, output_dir, received, stroke_classes, stroke_classifier,
                     svg_grid, while_connected)

GUIDANCE_LABEL = "Guidance (how much it keeps your lines)"
CLASS_PULL_LABEL = "Recognisability guidance"
CLASS_PULL_INFO = ("Pulls the result toward what the sketch classifier recognises as the class (0 = off). A light "
                   "touch-up gets little of it; a drawing redrawn from far gets all of it.")


def guidance_info() -> str:
    """What the Guidance slider measures with, said before the first click when LPIPS is missing."""
    why = lpips_needs()
    if why is None:
        return "Keeps the result close to your lines by LPIPS (a perceptual distance between the two drawings)."
    return ("LPIPS is not available here, so guidance compares the drawings by the sketch classifier's features "
            f"instead (coarser: it keeps the overall shape more than each line). {why}")


MODES = ("rectify", "heal")


def _rough_input(canvas_value, upload: str | None):
    """The drawing to work on: the uploaded file when there is one (only a file the app received), else the canvas
    strokes, typed (`canvas.strokes_from_value`): a string is never taken for a path."""
    path = received(upload, "The drawing")
    return path if path else canvas_component.strokes_from_value(canvas_value)


def rectify_sketch(canvas_json, upload, class_name, mode, strength, guidance, seed, auto_strength: bool = False,
                   request: gr.Request | None = None, classifier_guidance: float = RECTIFY_CLASSIFIER_GUIDANCE):
    """-> (before PNG, after PNG, animated SVG HTML, info, downloads)."""
    mode = as_choice(mode, MODES, "Mode")
    seed = as_seed(seed)
    guidance = as_float(guidance, GUIDANCE_LABEL.split(" (")[0], 0.0, 4.0)
    classifier_guidance = as_float(classifier_guidance, CLASS_PULL_LABEL, 0.0, 0.3)
    if not isinstance(auto_strength, bool):
        raise gr.Error("Automatic strength must be true or false.")
    strength = "auto" if auto_strength else as_float(strength, "Strength", 0.02, 1.0)
    if not isinstance(class_name, str):
        raise gr.Error("Class must be the name of a class.")
    source = _rough_input(canvas_json, upload)
    model, clf = stroke_loaders.load_stroke_model(), stroke_classifier()
    name = None if class_name == "auto" else class_name
    try:
        with while_connected(request) as left:
            budget = Deadline(REQUEST_SECONDS["rectify"], "Heal" if mode == "heal" else "Rectify", also=left)
            if mode == "heal":
                res = heal(source, model, clf, name, seed=seed, classifier_guidance=classifier_guidance, cancel=budget)
            else:
                res = rectify(source, model, clf, name, strength=strength, guidance=guidance, seed=seed,
                              classifier_guidance=classifier_guidance, cancel=budget)
    except DiffSketchError as exc:
        raise fail(exc) from None
    files = export_sketches([res.rough, res.sketch], output_dir(request, "rectify"), stem="rectify", same_frame=True)
    conf = ""
    if res.confidence_before is not None:
        conf = (f" Classifier's confidence in *{res.class_name}*: {res.confidence_before:.0%} before, "
                f"{res.confidence_after:.0%} after.")
    info = f"{'Healed' if mode == 'heal' else 'Rectified'} as **{res.class_name or 'any class'}** in {res.seconds:.1f} s " \
           f"({res.nfe} steps).{conf} {' '.join(res.notes)}"
    return files.pngs[0], files.pngs[1], svg_grid([res.sketch]), info, [files.svgs[1], files.pngs[1], files.npz]


def build() -> tuple[gr.Button, gr.Image, gr.Image, gr.HTML]:
    """-> the hand-over to Sketch -> Picture: (its button, After, the upload, the canvas); app.py wires it."""
    with gr.Row():
        with gr.Column():
            canvas = canvas_component.build("rectify-canvas")
            upload = gr.Image(label="...or upload a drawing (used instead of the canvas)", type="filepath",
                              image_mode=None, sources=["upload"], height=200)
        with gr.Column():
            cls = gr.Dropdown(["auto"] + stroke_classes(), value="auto", label="Class (auto = ask the classifier)")
            mode = gr.Radio([("Rectify (clean up)", "rectify"), ("Heal (complete what is missing)", "heal")],
                            value="rectify", label="Mode")
            auto = gr.Checkbox(True, label="Automatic strength (the rougher the drawing, the more it is redrawn)")
            strength = gr.Slider(0.02, 1.0, value=0.3, step=0.01, label="Strength (how far from your drawing)",
                                 interactive=False)
            guidance = gr.Slider(0.0, 4.0, value=1.0, step=0.1, label=GUIDANCE_LABEL, info=guidance_info(),
                                 elem_id="rectify-guidance")
            pull = gr.Slider(0.0, 0.3, value=RECTIFY_CLASSIFIER_GUIDANCE, step=0.01, label=CLASS_PULL_LABEL,
                             info=CLASS_PULL_INFO)
            seed = gr.Number(0, precision=0, label="Seed")
            go = gr.Button("Rectify", variant="primary")
    info = gr.Markdown()
    with gr.Row():
        before = gr.Image(label="Before", format="png", interactive=False)
        after = gr.Image(label="After", format="png", interactive=False)
        animated = gr.HTML(label="After, animated")
    files = gr.File(label="Downloads (SVG, PNG, npz)", file_count="multiple")
    send = gr.Button("Send to Sketch -> Picture")
    auto.change(lambda a: gr.update(interactive=not a), [auto], [strength])
    go.click(rectify_sketch, [canvas, upload, cls, mode, strength, guidance, seed, auto, pull],
             [before, after, animated, info, files], api_name="rectify", concurrency_limit=2, show_progress_on=after)
    return send, after, upload, canvas
