"""Photo -> Sketch: many photos at once in the loaded style; size, line weight, threshold, transparency, zip."""

from __future__ import annotations

import zipfile
from pathlib import Path

import gradio as gr

from diffsketch_core.diffusion.captioner import shared_captioner
from diffsketch_core.errors import DiffSketchError
from diffsketch_core.style.photo2sketch import PhotoToSketch, finish
from diffsketch_core.style.store import load_style
from diffsketch_core.style.student import StudentSketcher, style_student

from . import cnn_style, common
from .common import GPU, fail

SIZES = {"Same as photo": None, "512 px (long side)": 512, "1024 px (long side)": 1024}


def _styled(model: PhotoToSketch, path: Path, size, line_weight, threshold, transparent, notes=None):
    result = model(path)
    img = result.sketch
    if notes is not None:  # what the captioner said of each photo
        notes += [f"{path.name}: {n}" for n in getattr(result, "caption_notes", [])]
    if SIZES.get(size):
        s = SIZES[size] / max(img.size)
        img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))))
    return finish(img, int(line_weight), threshold if threshold > 0 else None, bool(transparent))


@GPU(duration=120)
def photos_to_sketches(files, size, line_weight, threshold, transparent, style_dir, source,
                       request: gr.Request | None = None, progress=gr.Progress(), caption=None, fast=False,
                       captioner=None, mirror=False):
    fast = fast is True  # any API client can send anything; only a real tick switches the student on
    if source is None and not fast:
        raise gr.Error(common.toast(common.needs_style_weights()))
    if not style_dir:
        raise gr.Error("No style yet: train one in the Style tab or upload a saved style there.")
    if not files:
        raise gr.Error("Upload one or more photos.")
    # typed at the boundary (any API client can send anything): uploaded files only, numbers in the widgets' ranges
    files = common.received_files(files, "Each photo")
    size = common.as_choice(size, list(SIZES), "Output size")
    line_weight = common.as_int(line_weight, "Line weight", -2, 3)
    threshold = common.as_float(threshold, "Threshold", 0.0, 1.0)
    if not isinstance(transparent, bool):
        raise gr.Error("Transparent background must be true or false.")
    if not isinstance(mirror, bool):
        raise gr.Error("Mirror-averaged must be true or false.")
    try:
        if fast:  # issue 14: the style's own distilled student, no backbone needed
            student = style_student(style_dir)
            if student is None:
                raise gr.Error("This style has no student yet: distil one in the Style tab (Distil this style), "
                               "or untick Fast (student).")
            model = StudentSketcher(student, mirror=mirror)
        elif cnn_style.is_cnn(source):  # issue 13: a style trained on VGG16 features
            model = cnn_style.model(style_dir, source, mirror)
        else:
            bb = common.backbone(source)
            text = caption.strip() if isinstance(caption, str) and caption.strip() else None  # None: the style's
            each = None
            if isinstance(captioner, str) and captioner.strip():  # issue 16: a caption per photo, when one is named
                each = shared_captioner(captioner.strip(), "cpu")
            model = PhotoToSketch(load_style(style_dir, bb), bb, text, captioner=each)
    except DiffSketchError as exc:
        raise fail(exc) from None
    out_dir = common.output_dir(request, "sketches")  # a request's outputs: swept once Gradio has copied them
    outputs, problems, captions = [], [], []
    for path in progress.tqdm(files, desc="Sketching"):
        path = Path(path)
        try:
            img = _styled(model, path, size, line_weight, threshold, transparent, captions)
        except DiffSketchError as exc:
            problems.append(f"{path.name}: {exc}")
            continue
        target = out_dir / f"{path.stem}-sketch.png"
        img.save(target)
        outputs.append(str(target))
    if not outputs:
        raise gr.Error("No photo could be sketched: " + "; ".join(problems))
    zipped = out_dir.with_suffix(".zip")
    with zipfile.ZipFile(zipped, "w") as zf:
        for o in outputs:
            zf.write(o, Path(o).name)
    note = f"{len(outputs)} sketch(es)." + (" Skipped: " + "; ".join(problems) if problems else "")
    note += "".join(f"\n\n{c}" for c in captions)
    return outputs, str(zipped), note


def build(backbone: gr.State, style_state: gr.State) -> gr.Markdown:
    banner = gr.Markdown(common.needs_style_weights())
    with gr.Row():
        with gr.Column():
            files = gr.File(label="Photos", file_count="multiple", file_types=["image"])
            size = gr.Radio(list(SIZES), value="Same as photo", label="Output size")
            weight = gr.Slider(-2, 3, value=0, step=1, label="Line weight (px thinner / thicker)")
            threshold = gr.Slider(0, 1, value=0, step=0.05, label="Threshold (0 = keep grey tones)")
            transparent = gr.Checkbox(False, label="Transparent background")
            caption = gr.Textbox(label="What these photos show (optional; empty: the style's own caption)")
            captioner = gr.Textbox(label="Captioner: caption each photo (hub id or folder of an image-captioning "
                                         "model; empty: off; Stable Diffusion styles only)")
            fast = gr.Checkbox(False, label="Fast (student)", elem_id="photo-fast",
                               info="the style's distilled student (Style tab, Distil this style): a fraction of a "
                                    "second per photo on a CPU, no backbone needed")
            mirror = gr.Checkbox(True, label="Mirror-averaged", elem_id="photo-mirror",
                                 info="CPU styles and Fast (student): each sketch averaged with that of the mirrored "
                                      "photo; steadier lines, twice the time")
            run = gr.Button("Sketch photos", variant="primary")
        with gr.Column():
            gallery = gr.Gallery(label="Sketches", format="png", columns=2)
            download = gr.DownloadButton("Download all (.zip)")
            note = gr.Markdown()
    run.click(photos_to_sketches, [files, size, weight, threshold, transparent, style_state, backbone, caption, fast,
                                   captioner, mirror],
              [gallery, download, note], concurrency_limit=1, concurrency_id="gpu", show_progress_on=gallery)
    return banner
