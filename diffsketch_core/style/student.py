"""A style's own student: a SketchStudent (extractors/student.py) distilled from the style, kept in the style
folder under `student/` so a style zip carries it and Photo -> Sketch can run the style on a CPU in a fraction
of a second. A student of the wrong shape (another input/output layout, or not a student at all) is refused
when the style is loaded or unpacked, never run.

    attach_student(style_folder, student_folder)   # copy a distilled student into the style
    style_student(style_folder) -> SketchStudent | None
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import torch
from PIL import Image

from ..errors import BadInputError
from ..extractors.student import SketchStudent, load_student, n_params, sketch_with
from ..images import ImageLike, ink_to_sketch, load_image

SUBFOLDER = "student"
MAX_PARAMS = 20_000_000  # a style's student is small by design; anything larger is not one of ours


def check_student_folder(folder: str | Path) -> dict:
    """The student's config if `folder` holds a student of the right shape (RGB in, one ink channel out, a
    SketchStudent); otherwise BadInputError saying what is wrong. Reads config.json only (cheap, for uploads)."""
    folder = Path(folder)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise BadInputError(f"The style's student folder {folder.name}/ has no config.json.")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise BadInputError(f"The style's student config is not valid JSON ({exc}).") from None
    if cfg.get("_class_name") != SketchStudent.__name__:
        raise BadInputError(f"The style's student is a {cfg.get('_class_name')!r}, not a {SketchStudent.__name__}.")
    if cfg.get("in_channels", 3) != 3 or cfg.get("out_channels", 1) != 1:
        raise BadInputError(f"The style's student has the wrong shape ({cfg.get('in_channels')} channels in, "
                            f"{cfg.get('out_channels')} out; a sketch student takes 3 and gives 1).")
    if not any(folder.glob("*.safetensors")):
        raise BadInputError("The style's student has no safetensors weights.")
    return cfg


def load_checked(folder: str | Path) -> SketchStudent:
    """Load a student after the shape check; weights that do not fit its config are refused too."""
    check_student_folder(folder)
    model = load_student(folder)
    if n_params(model) > MAX_PARAMS:
        raise BadInputError(f"The style's student has {n_params(model):,} parameters; a sketch student has a few million.")
    return model


def attach_student(style_folder: str | Path, student_folder: str | Path) -> Path:
    """Copy a distilled student into the style folder (replacing an older one)."""
    load_checked(student_folder)
    dest = Path(style_folder) / SUBFOLDER
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(student_folder, dest)
    return dest


def style_student(style_folder: str | Path) -> SketchStudent | None:
    """The style's own student, or None when it has none."""
    folder = Path(style_folder) / SUBFOLDER
    return load_checked(folder) if folder.is_dir() else None


class StudentSketcher:
    """A student as Photo -> Sketch runs it: photo in (any image the app accepts), `.sketch` (mode "L", 255 =
    paper, the photo's size) out, with the notes of loading the photo. Large photos run at `resolution` on their
    long side and come back scaled, as the classic extractors do. `mirror`: averaged with the mirrored photo's
    sketch (mirror.py; twice the time)."""

    def __init__(self, model: SketchStudent, resolution: int = 1024, mirror: bool = False):
        self.model, self.resolution = model.to(memory_format=torch.channels_last), resolution
        self.mirror = mirror

    def __call__(self, photo: ImageLike) -> SimpleNamespace:
        loaded = load_image(photo)
        img, notes = loaded.image, list(loaded.notes)
        w, h = img.size
        if max(w, h) > self.resolution:
            s = self.resolution / max(w, h)
            img = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)
        sketch = ink_to_sketch(sketch_with(self.model, img, self.mirror))
        if sketch.size != (w, h):
            sketch = sketch.resize((w, h), Image.Resampling.BILINEAR)
        return SimpleNamespace(sketch=sketch, notes=notes)
