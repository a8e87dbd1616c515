"""Style zips: what a user downloads and uploads. Only a style's own files go in or come out (safetensors weights
and JSON); anything else is refused before a byte is written. Sizes are budgeted twice: the headers' declared
sizes before extracting, then the bytes actually inflated while streaming (a header can lie), so a small zip can
never fill the disk or the memory."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from ..budgets import MAX_STYLE_BYTES, MAX_STYLE_JSON_BYTES
from ..errors import BadInputError
from .student import check_student_folder

ALLOWED_FILES = {"config.json", "style.json", "diffusion_pytorch_model.safetensors"}
# issue 14: a style may carry its distilled student in student/ (checked for shape when unpacked)
STUDENT_FILES = {f"student/{n}" for n in ("config.json", "diffusion_pytorch_model.safetensors", "training.json")}


def _member_key(name: str) -> str:
    """Where a member lands: the student's own files keep their folder, everything else is flattened."""
    return name if name in STUDENT_FILES else Path(name).name
CHUNK = 1024**2
TOO_LARGE = "The style zip is too large to be a DiffSketch style (over {mb:.0f} MB unpacked)."


def pack_style(folder: str | Path, zip_path: str | Path) -> Path:
    """Zip a style folder for download (only the files a style consists of)."""
    folder, zip_path = Path(folder), Path(zip_path)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as zf:
        for name in sorted(ALLOWED_FILES | STUDENT_FILES):
            if (folder / name).is_file():
                zf.write(folder / name, name)
    return zip_path


def _limit(name: str) -> int:
    return MAX_STYLE_JSON_BYTES if name.endswith(".json") else MAX_STYLE_BYTES


def _check_members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    members = [m for m in zf.infolist() if not m.is_dir()]
    names = [_member_key(m.filename) for m in members]
    foreign = sorted({m.filename for m in members if _member_key(m.filename) not in ALLOWED_FILES | STUDENT_FILES})
    if foreign:
        raise BadInputError(f"The style zip holds files a style never has ({', '.join(foreign[:3])}); "
                            "only safetensors styles saved by DiffSketch Studio are accepted.")
    if len(set(names)) != len(names):  # with the names allowed, this also bounds the member count
        raise BadInputError("The style zip holds the same file twice; upload the .zip a style was downloaded as.")
    if not {"style.json", "config.json"} <= set(names):
        raise BadInputError("The zip is not a DiffSketch style (style.json and config.json are missing).")
    if sum(m.file_size for m in members) > MAX_STYLE_BYTES:
        raise BadInputError(TOO_LARGE.format(mb=MAX_STYLE_BYTES / 1024**2))
    for m in members:
        if m.file_size > _limit(m.filename):
            raise BadInputError(f"The style zip's {Path(m.filename).name} is too large to be a style's "
                                f"({m.file_size / 1024**2:.1f} MB unpacked).")
    return members


def _extract(zf: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path, budget: int) -> int:
    """Stream one member to `target`, stopping at its declared size, its own limit or the zip's remaining budget
    (whichever is smallest); returns the bytes written."""
    cap = min(member.file_size, _limit(member.filename), budget)
    written = 0
    with zf.open(member) as src, open(target, "wb") as dst:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            if written > cap:
                raise BadInputError(TOO_LARGE.format(mb=MAX_STYLE_BYTES / 1024**2) if written > budget else
                                    "The style zip is damaged (a file is larger than its header says).")
            dst.write(chunk)
    return written


def unpack_style(zip_path: str | Path, dest: str | Path) -> Path:
    """Unzip an uploaded style into `dest`, accepting only a style's own files (safetensors weights, JSON) within
    the size budgets; anything else (pickles, paths, oversized or lying members) is refused. On any failure `dest`
    is removed again, so a refused upload leaves nothing behind."""
    dest = Path(dest)
    created = not dest.exists()
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = _check_members(zf)
            dest.mkdir(parents=True, exist_ok=True)
            budget = MAX_STYLE_BYTES
            for m in members:  # flatten: names only (and student/), so no member can escape dest
                (dest / _member_key(m.filename)).parent.mkdir(exist_ok=True)
                budget -= _extract(zf, m, dest / _member_key(m.filename), budget)
            if (dest / "student").is_dir():  # a student of the wrong shape is refused with the whole upload
                check_student_folder(dest / "student")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError, ValueError) as exc:
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        if isinstance(exc, BadInputError):
            raise
        raise BadInputError("The uploaded file is not a readable zip archive; upload the .zip a style was "
                            "downloaded as.") from None
    return dest
