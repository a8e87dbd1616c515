"""Classic sketch: a photo through HED, PiDiNet, XDoG or Canny. It opens on an extractor that runs here now;
the others stay listed with what they need, shown in the page when chosen."""

from __future__ import annotations

import gradio as gr

from diffsketch_core.errors import DiffSketchError
from diffsketch_core.extractors import METHODS, extract_sketch, needs

from .common import ASSETS, EXTRACTOR_LABELS, as_choice, fail, output_dir, received

PREFERENCE = ("pidinet", "hed", "fast", "xdog", "canny")  # the default is the first of these that can run now


def classic_sketch(photo: str | None, method: str, request: gr.Request | None = None) -> tuple[str, str, str]:
    """Photo file -> (sketch PNG for display, same file for download, notes)."""
    photo = received(photo, "The photo")
    if not photo:
        raise gr.Error("Upload a photo first.")
    method = as_choice(method, METHODS, "Extractor")
    try:
        sketch = extract_sketch(photo, method)
    except DiffSketchError as exc:
        raise fail(exc) from None
    out = output_dir(request, "classic") / f"sketch-{method}.png"
    sketch.image.save(out)
    w, h = sketch.image.size
    return str(out), str(out), f"{EXTRACTOR_LABELS.get(method, method)} sketch, {w}x{h} px. {' '.join(sketch.notes)}".strip()


def method_choices(methods: tuple[str, ...] = METHODS) -> tuple[list[tuple[str, str]], str]:
    """Radio choices labelled with what is missing, and the default: the first that can run now."""
    missing = {m: needs(m) for m in methods}
    choices = [(EXTRACTOR_LABELS.get(m, m) + (" - needs weights" if missing[m] else ""), m) for m in methods]
    ready = [m for m in PREFERENCE if m in missing and not missing[m]]
    default = ready[0] if ready else methods[-1]
    return choices, default


def method_note(method: str) -> str:
    why = needs(method)
    return f"**{EXTRACTOR_LABELS.get(method, method)} cannot run yet.** {why}" if why else ""


def build() -> None:
    choices, default = method_choices()
    with gr.Row():
        with gr.Column():
            photo = gr.Image(label="Photo", type="filepath", image_mode=None, sources=["upload", "clipboard"])
            method = gr.Radio(choices, value=default, label="Extractor", elem_id="classic-method")
            method_info = gr.Markdown(method_note(default), elem_id="classic-method-note")
            run = gr.Button("Make sketch", variant="primary")
        with gr.Column():
            sketch = gr.Image(label="Sketch", type="filepath", format="png", interactive=False)
            download = gr.DownloadButton("Download PNG")
            info = gr.Markdown()
    examples = sorted(str(p) for p in (ASSETS / "photos").glob("*.png"))
    if examples:
        gr.Examples(examples, inputs=[photo], label="Example photos")
    method.change(method_note, [method], [method_info])
    run.click(classic_sketch, [photo, method], [sketch, download, info], api_name="classic_sketch",
              concurrency_limit=2, show_progress_on=sketch)
