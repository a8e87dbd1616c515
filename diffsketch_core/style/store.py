"""A trained style on disk: a folder with the generator (config.json + safetensors) and style.json (what it was
trained with). Loading validates both and refuses styles made for a differently shaped backbone."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..checkpoints import load_saved
from ..diffusion.backbone import Backbone
from ..errors import BadInputError
from .cnn_generator import CNNSketchGenerator
from .generator import SketchGenerator
from .student import check_student_folder

STYLE_FORMAT = "diffsketch-style"
STYLE_VERSION = 2
# Version 2 (issue 19): VAE-decoder taps are full ResnetBlock2D outputs (version 1 recorded only their residual
# branch) and style.json records the training seed. SD styles older than this are refused: their generator was
# trained on other features and would give wrong sketches silently.
MIN_SD_STYLE_VERSION = 2
# style.json "generator" -> the class that loads the weights; a style's backbone kind decides which one trained it.
# Styles saved before the field existed are SD styles.
GENERATORS: dict[str, type] = {"SketchGenerator": SketchGenerator}
GENERATORS["CNNSketchGenerator"] = CNNSketchGenerator  # issue 13: VGG16 features (diffusion/cnn.py)
KIND_NAMES = {"sd": "Stable Diffusion", "cnn": "CPU: VGG16 features"}
_CNN_KEYS = ("arch", "weights", "taps", "channels", "padding")
DEFAULT_KIND = "sd"
_SHAPE_KEYS = ("block_out_channels", "layers_per_block", "cross_attention_dim", "vae_block_out_channels")


@dataclass
class Style:
    generator: SketchGenerator
    caption: str
    resolution: int
    meta: dict = field(default_factory=dict)
    kind: str = DEFAULT_KIND  # the backbone family it was trained on: "sd", or another registered kind

    @property
    def timesteps(self) -> tuple[int, ...]:
        return tuple(getattr(self.generator.config, "timesteps", ()))  # CNN styles have none

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        self.generator.save_pretrained(str(folder), safe_serialization=True)
        info = {"format": STYLE_FORMAT, "version": STYLE_VERSION, "kind": self.kind,
                "generator": type(self.generator).__name__, "caption": self.caption,
                "resolution": self.resolution, "timesteps": list(self.timesteps),
                "backbone": self.generator.config.backbone, "saved": time.strftime("%Y-%m-%d %H:%M:%S")} | self.meta
        (folder / "style.json").write_text(json.dumps(info, indent=2))
        return folder


def check_compatible(style_backbone: dict | None, backbone: Backbone) -> None:
    theirs = style_backbone or {}
    ours = backbone.fingerprint
    kinds = theirs.get("kind", DEFAULT_KIND), ours.get("kind", DEFAULT_KIND)
    if kinds[0] != kinds[1]:
        raise BadInputError(f"This style was trained on the {KIND_NAMES.get(kinds[0], kinds[0])} backbone, but the "
                            f"{KIND_NAMES.get(kinds[1], kinds[1])} backbone is loaded. Choose the backbone it was "
                            "made with, or train the style again on this one.")
    _check_family(theirs, ours)
    diffs = [k for k in (_SHAPE_KEYS if kinds[1] == DEFAULT_KIND else _CNN_KEYS) if theirs.get(k) != ours.get(k)]
    if diffs:
        raise BadInputError(f"This style was trained on a different backbone ('{theirs.get('source', '?')}', "
                            f"differing in {', '.join(diffs)}) than the one loaded ('{ours['source']}'). "
                            "Load the backbone it was made with.")


def _check_family(theirs: dict, ours: dict) -> None:
    """An SD style is refused by another SD family (sd1 / sd2 / sdxl, issue 16): its features differ in kind, not
    only in width. Styles saved before families were recorded are SD 1.x ones."""
    from .. import settings
    from ..diffusion.backbone import FAMILY_NAMES, SD1

    if "family" not in ours:  # not a Stable Diffusion backbone: the kind check above speaks for it
        return
    family = theirs.get("family", SD1)
    if family != ours["family"]:
        raise BadInputError(f"This style was trained on a {FAMILY_NAMES.get(family, family)} backbone "
                            f"('{theirs.get('source', '?')}'), but a {FAMILY_NAMES.get(ours['family'], ours['family'])} "
                            f"backbone is loaded ('{ours['source']}'). Load a {FAMILY_NAMES.get(family, family)} "
                            f"backbone (Backbone panel, {settings.SD_MODEL_ENV} or --backbone), or train the style again on "
                            "this one.")


def _check_style_json(info, config_path: Path) -> None:
    """The shapes the rest of load_style relies on: style.json an object with a whole-number version, config.json
    an object (diffusers reads anything else as a hub id and answers "couldn't connect to huggingface.co")."""
    if not isinstance(info, dict):
        raise BadInputError("The style's style.json is not a DiffSketch style description (it must be a JSON object).")
    version = info.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise BadInputError(f"The style's format version ({version!r}) is not one this version knows.")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadInputError("The style's config.json is not valid JSON.") from None
    if not isinstance(config, dict):
        raise BadInputError("The style's config.json is not a generator configuration (it must be a JSON object).")


def load_style(folder: str | Path, backbone: Backbone | None = None) -> Style:
    folder = Path(folder)
    info_path = folder / "style.json"
    if not info_path.is_file() or not (folder / "config.json").is_file():
        raise BadInputError(f"{folder} is not a DiffSketch style (style.json and config.json are missing).")
    try:
        info = json.loads(info_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadInputError(f"{info_path} is not valid JSON.") from None
    _check_style_json(info, folder / "config.json")
    if info.get("format") != STYLE_FORMAT:
        raise BadInputError(f"{folder} is not a DiffSketch style (format {info.get('format')!r}).")
    if info.get("version", 0) > STYLE_VERSION:
        raise BadInputError(f"This style was saved by a newer version (style format {info['version']}); please update.")
    if info.get("kind", DEFAULT_KIND) == DEFAULT_KIND and info.get("version", 0) < MIN_SD_STYLE_VERSION:
        raise BadInputError(f"This style was made by an older version (style format {info.get('version', 0)}) whose "
                            "VAE-decoder features were wrong; it cannot be used. Train it again from its photo and "
                            "sketch.")
    if not any(folder.glob("*.safetensors")):
        raise BadInputError(f"{folder} has no safetensors weights (only safetensors styles are accepted).")
    if (folder / "student").is_dir():  # issue 14: the style's distilled student; one of the wrong shape is refused
        check_student_folder(folder / "student")
    cls = GENERATORS.get(info.get("generator", "SketchGenerator"))
    if cls is None:
        raise BadInputError(f"This style's generator ({info.get('generator')!r}) is not one this version knows.")
    gen = load_saved(cls, folder, "style generator")
    meta = {k: v for k, v in info.items() if k not in {"caption", "resolution", "kind"}}
    style = Style(gen.eval(), info.get("caption", ""), int(info.get("resolution", 512)), meta,
                  info.get("kind", DEFAULT_KIND))
    return style if backbone is None else attach(style, backbone)


def attach(style: Style, backbone: Backbone) -> Style:
    """The style on `backbone`'s device, once the backbone is one it can read. A command loads the style first and
    the backbone after, so a wrong style folder is said before minutes of backbone loading."""
    check_compatible(style.generator.config.backbone, backbone)
    style.generator.to(backbone.device)
    return style
