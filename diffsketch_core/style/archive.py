"""Style zips: what a user downloads and uploads. Only a style's own files go in or come out (safetensors weights
and JSON); anything else is refused before a byte is written."""

from __future__ import annotations

import zipfile
from pathlib import Path

from ..errors import BadInputError

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
