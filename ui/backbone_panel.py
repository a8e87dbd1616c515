"""The Backbone panel: which Stable Diffusion (1.x, 2.x or XL; the family is read from the model's configs) the Style
and Photo -> Sketch tabs use."""

from __future__ import annotations

import gradio as gr

from diffsketch_core import settings
from diffsketch_core.diffusion.backbone import FAMILY_NAMES, TINY
from diffsketch_core.errors import DiffSketchError

from . import cnn_style, common


def chosen(source: str | None, demo: bool) -> str:
    """The backbone the panel would load: the demo one when ticked, else the box's source or the SD setting."""
    return TINY if demo else (source or "").strip() or settings.sd_model()


def load_backbone_ui(source: str, demo: bool) -> tuple[str | None, str, str, str]:
    """-> (backbone state, status, Style banner, Photo->Sketch banner)."""
    wanted = chosen(source, demo)
    if cnn_style.is_cnn(wanted):  # issue 13: the CPU backbone kind
        try:
            cnn_style.backbone(wanted)
        except DiffSketchError as exc:
            return _failed(wanted, exc)
        return wanted, f"Loaded `{wanted}` ({cnn_style.CPU_LABEL}).", cnn_style.BANNER, cnn_style.BANNER
    try:
        common.backbone(wanted)
        if not demo:
            common.clip(False)  # training needs CLIP too: say so now rather than at Train
    except DiffSketchError as exc:
        return _failed(wanted, exc)
    banner = common.banner(wanted)
    return wanted, f"Loaded `{wanted}` ({describe_sd(common.backbone(wanted))}).", banner, banner


def _failed(wanted: str, exc: Exception) -> tuple[None, str, str, str]:
    needs = common.needs_style_weights()  # built once: it checks the VGG16 weights on disk
    return None, f"Could not load `{wanted}`: {exc}", needs, needs


def describe_sd(bb) -> str:
    """What the status line says of a loaded Stable Diffusion: family, native size, what its UNet predicts."""
    prediction = "v-prediction" if bb.prediction_type == "v_prediction" else "epsilon-prediction"
    return f"{FAMILY_NAMES.get(bb.family, bb.family)}, {bb.resolution} px native, {prediction}"


def build() -> tuple[gr.Textbox, gr.Checkbox, gr.Button, gr.Markdown]:
    with gr.Accordion("Backbone (Stable Diffusion 1.x / 2.x / XL, or CPU: VGG16 features)", open=False):
        default = cnn_style.default_source()
        kind = gr.Radio([cnn_style.SD_LABEL, cnn_style.CPU_LABEL], label="Backbone kind",
                        value=cnn_style.CPU_LABEL if cnn_style.is_cnn(default) else cnn_style.SD_LABEL)
        with gr.Row():
            source = gr.Textbox(default, label="Hub id or local diffusers folder ('vgg16' = CPU: VGG16 features)",
                                info="SD 1.x (CompVis/stable-diffusion-v1-4), SD 2.x (stabilityai/stable-diffusion-2-1, "
                                     "768 px, v-prediction; -2-1-base, 512 px) or SDXL (stabilityai/stable-diffusion-"
                                     "xl-base-1.0, 1024 px): the family is read from the model's configs. Offline, "
                                     f"a hub id must already be in the cache; else give a folder (or set "
                                     f"{settings.SD_MODEL_ENV}). A style only works on the family it was trained on.",
                                scale=3)
            demo = gr.Checkbox(False, label="Demo backbone (tiny, random weights)", scale=1)
            load = gr.Button("Load", scale=1)
        status = gr.Markdown("No backbone loaded yet. Style training and Photo -> Sketch need one.")
        kind.change(lambda k: cnn_style.SOURCES[0] if k == cnn_style.CPU_LABEL else settings.sd_model(), kind, source)
    return source, demo, load, status
