"""A trained style on disk: a folder with the generator (config.json + safetensors) and style.json (what it was
trained with). Loading validates both and refuses styles made for a differently shaped backbone."""

from __future__ import annotations

import json
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..diffusion.backbone import Backbone
from ..errors import BadInputError
from .generator import SketchGenerator

STYLE_FORMAT = "diffsketch-style"
STYLE_VERSION = 1
_SHAPE_KEYS = ("block_out_channels", "layers_per_block", "cross_attention_dim", "vae_block_out_channels")


@dataclass
class Style:
    generator: SketchGenerator
    caption: str
    resolution: int
    meta: dict = field(default_factory=dict)

    @property
    def timesteps(self) -> tuple[int, ...]:
        return tuple(self.generator.config.timesteps)

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        self.generator.save_pretrained(str(folder), safe_serialization=True)
        info = {"format": STYLE_FORMAT, "version": STYLE_VERSION, "caption": self.caption,
                "resolution": self.resolution, "timesteps": list(self.timesteps),
                "backbone": self.generator.config.backbone, "saved": time.strftime("%Y-%m-%d %H:%M:%S")} | self.meta
        (folder / "style.json").write_text(json.dumps(info, indent=2))
        return folder


def check_compatible(style_backbone: dict | None, backbone: Backbone) -> None:
    theirs = style_backbone or {}
    ours = backbone.fingerprint
    diffs = [k for k in _SHAPE_KEYS if theirs.get(k) != ours.get(k)]
    if diffs:
        raise BadInputError(f"This style was trained on a different backbone ('{theirs.get('source', '?')}', "
                            f"differing in {', '.join(diffs)}) than the one loaded ('{ours['source']}'). "
                            "Load the backbone it was made with.")


def load_style(folder: str | Path, backbone: Backbone | None = None) -> Style:
    folder = Path(folder)
    info_path = folder / "style.json"
    if not info_path.is_file() or not (folder / "config.json").is_file():
        raise BadInputError(f"{folder} is not a DiffSketch style (style.json and config.json are missing).")
    try:
        info = json.loads(info_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadInputError(f"{info_path} is not valid JSON.") from None
    if info.get("format") != STYLE_FORMAT:
        raise BadInputError(f"{folder} is not a DiffSketch style (format {info.get('format')!r}).")
    if info.get("version", 0) > STYLE_VERSION:
        raise BadInputError(f"This style was saved by a newer version (style format {info['version']}); please update.")
    if not any(folder.glob("*.safetensors")):
        raise BadInputError(f"{folder} has no safetensors weights (only safetensors styles are accepted).")
    try:
        gen = SketchGenerator.from_pretrained(str(folder), use_safetensors=True, torch_dtype=torch.float32)
    except (OSError, ValueError, TypeError, RuntimeError, KeyError) as exc:
        raise BadInputError(f"Could not load the style's generator from {folder}: {exc}") from None
    if backbone is not None:
        check_compatible(gen.config.backbone, backbone)
        gen.to(backbone.device)
    meta = {k: v for k, v in info.items() if k not in {"caption", "resolution"}}
    return Style(gen.eval(), info.get("caption", ""), int(info.get("resolution", 512)), meta)


ALLOWED_FILES = {"config.json", "style.json", "diffusion_pytorch_model.safetensors"}
MAX_STYLE_BYTES = 2 * 1024**3


def pack_style(folder: str | Path, zip_path: str | Path) -> Path:
    """Zip a style folder for download (only the files a style consists of)."""
    folder, zip_path = Path(folder), Path(zip_path)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as zf:
        for name in sorted(ALLOWED_FILES):
            if (folder / name).is_file():
                zf.write(folder / name, name)
    return zip_path


def unpack_style(zip_path: str | Path, dest: str | Path) -> Path:
    """Unzip an uploaded style into `dest`, accepting only a style's own files (safetensors weights, JSON);
    anything else (pickles, paths, oversized members) is refused before a byte is written."""
    dest = Path(dest)
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            names = {Path(m.filename).name for m in members}
            foreign = sorted({m.filename for m in members if Path(m.filename).name not in ALLOWED_FILES})
            if foreign:
                raise BadInputError(f"The style zip holds files a style never has ({', '.join(foreign[:3])}); "
                                    "only safetensors styles saved by DiffSketch Studio are accepted.")
            if not {"style.json", "config.json"} <= names:
                raise BadInputError("The zip is not a DiffSketch style (style.json and config.json are missing).")
            if sum(m.file_size for m in members) > MAX_STYLE_BYTES:
                raise BadInputError("The style zip is too large to be a DiffSketch style.")
            dest.mkdir(parents=True, exist_ok=True)
            for m in members:  # flatten: names only, so no member can escape dest
                (dest / Path(m.filename).name).write_bytes(zf.read(m))
    except zipfile.BadZipFile:
        raise BadInputError("The uploaded file is not a zip archive; upload the .zip a style was downloaded as.") from None
    return dest
