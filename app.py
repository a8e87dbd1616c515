"""DiffSketch Studio: the Gradio app. Layout and events only; every computation lives in diffsketch_core.

Run: python app.py   (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override host and port)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from diffsketch_core.errors import DiffSketchError
from diffsketch_core.extractors import METHODS, extract_sketch

ASSETS = Path(__file__).parent / "assets"
EXTRACTOR_LABELS = {"hed": "HED (soft, detailed)", "pidinet": "PiDiNet (clean contours)",
                    "xdog": "XDoG (tonal, DiffSketch's setting)", "canny": "Canny (thin, hard edges)"}


def _out_path(stem: str, suffix: str = ".png") -> Path:
    # A fresh folder per result: gradio serves files from the temp dir, and nothing is shared between users.
    return Path(tempfile.mkdtemp(prefix="diffsketch-")) / f"{stem}{suffix}"


def classic_sketch(photo: str | None, method: str) -> tuple[str, str, str]:
    """Classic tab: photo file -> (sketch PNG for display, same file for download, notes)."""
    if not photo:
        raise gr.Error("Upload a photo first.")
    try:
        sketch = extract_sketch(photo, method)
    except DiffSketchError as exc:
        raise gr.Error(str(exc)) from None
    out = _out_path(f"sketch-{method}")
    sketch.image.save(out)
    w, h = sketch.image.size
    notes = " ".join(sketch.notes)
    return str(out), str(out), f"{EXTRACTOR_LABELS[method]} sketch, {w}x{h} px. {notes}".strip()


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


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="DiffSketch Studio") as demo:
        gr.Markdown("# DiffSketch Studio\nPhotos to sketches, with classic extractors and diffusion models.")
        with gr.Tabs():
            with gr.Tab("Classic sketch", id="classic"):
                _classic_tab()
    demo.queue(max_size=32, default_concurrency_limit=1)
    return demo


demo = build_demo()

if __name__ == "__main__":
    demo.launch()
