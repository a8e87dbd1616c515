"""The Backbone panel: which Stable Diffusion the Style and Photo -> Sketch tabs use."""

from __future__ import annotations

import gradio as gr

from diffsketch_core import settings
from diffsketch_core.diffusion.backbone import TINY
from diffsketch_core.errors import DiffSketchError

from . import cnn_style, common


def load_backbone_ui(source: str, demo: bool) -> tuple[str | None, str, str, str]:
    """-> (backbone state, status, Style banner, Photo->Sketch banner)."""
    wanted = TINY if demo else (source or "").strip() or settings.sd_model()
    if cnn_style.is_cnn(wanted):  # issue 13: the CPU backbone kind
        try:
            cnn_style.backbone(wanted)
        except DiffSketchError as exc:
            return None, f"Could not load `{wanted}`: {exc}", common.NEEDS_WEIGHTS, common.NEEDS_WEIGHTS
        return wanted, f"Loaded `{wanted}` ({cnn_style.CPU_LABEL}).", cnn_style.BANNER, cnn_style.BANNER
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
    with gr.Accordion("Backbone (Stable Diffusion 1.x, or CPU: VGG16 features)", open=False):
        default = cnn_style.default_source()
        kind = gr.Radio([cnn_style.SD_LABEL, cnn_style.CPU_LABEL], label="Backbone kind",
                        value=cnn_style.CPU_LABEL if cnn_style.is_cnn(default) else cnn_style.SD_LABEL)
        with gr.Row():
            source = gr.Textbox(default, label="Hub id or local diffusers folder ('vgg16' = CPU: VGG16 features)",
                                scale=3)
            demo = gr.Checkbox(False, label="Demo backbone (tiny, random weights)", scale=1)
            load = gr.Button("Load", scale=1)
        status = gr.Markdown("No backbone loaded yet. Style training and Photo -> Sketch need one.")
        kind.change(lambda k: cnn_style.SOURCES[0] if k == cnn_style.CPU_LABEL else settings.sd_model(), kind, source)
    return source, demo, load, status
