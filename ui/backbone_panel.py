"""The Backbone panel: which Stable Diffusion the Style and Photo -> Sketch tabs use."""

from __future__ import annotations

import gradio as gr

from diffsketch_core import settings
from diffsketch_core.diffusion.backbone import TINY
from diffsketch_core.errors import DiffSketchError

from . import common


def load_backbone_ui(source: str, demo: bool) -> tuple[str | None, str, str, str]:
    """-> (backbone state, status, Style banner, Photo->Sketch banner)."""
    wanted = TINY if demo else (source or "").strip() or settings.sd_model()
    try:
        common.backbone(wanted)
        if not demo:
            common.clip(False)  # training needs CLIP too: say so now rather than at Train
    except DiffSketchError as exc:
        msg = f"Could not load `{wanted}`: {exc}"
        return None, msg, common.NEEDS_WEIGHTS, common.NEEDS_WEIGHTS
    banner = common.banner(wanted)
    return wanted, f"Loaded `{wanted}`.", banner, banner


def build() -> tuple[gr.Textbox, gr.Checkbox, gr.Button, gr.Markdown]:
    with gr.Accordion("Backbone (Stable Diffusion 1.x)", open=False):
        with gr.Row():
            source = gr.Textbox(settings.sd_model(), label="Hub id or local diffusers folder", scale=3)
            demo = gr.Checkbox(False, label="Demo backbone (tiny, random weights)", scale=1)
            load = gr.Button("Load", scale=1)
        status = gr.Markdown("No backbone loaded yet. Style training and Photo -> Sketch need one.")
    return source, demo, load, status
