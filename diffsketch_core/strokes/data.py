"""The QuickDraw training data: one stroke-3 .npz per class (sketch-rnn layout, train/valid/test splits).

The folder comes from $DIFFSKETCH_QUICKDRAW_DIR, defaulting to ../shared/data/quickdraw/spg_stroke3 beside the
checkout (16,000 Quick, Draw! sketches, 20 classes; CC BY 4.0).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInputError
from .format import load_npz

DATA_DIR_ENV = "DIFFSKETCH_QUICKDRAW_DIR"
_DEFAULT = Path(__file__).resolve().parents[3] / "shared" / "data" / "quickdraw" / "spg_stroke3"


def data_dir() -> Path:
    path = Path(os.environ.get(DATA_DIR_ENV) or _DEFAULT)
    if not path.is_dir():
        raise BadInputError(f"No sketch data folder at {path}; set {DATA_DIR_ENV} to a folder of sketch-rnn .npz files.")
    return path


def available_classes(folder: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (folder or data_dir()).glob("*.npz"))


@dataclass
class SketchSet:
    classes: list[str]
    sketches: list[np.ndarray]
    labels: np.ndarray  # (n,) int64 index into classes

    def __len__(self) -> int:
        return len(self.sketches)


def load_split(split: str = "train", classes: list[str] | None = None, folder: Path | None = None) -> SketchSet:
    folder = folder or data_dir()
    classes = classes or available_classes(folder)
    sketches, labels = [], []
    for k, name in enumerate(classes):
        items = load_npz(folder / f"{name}.npz", split)
        sketches += items
        labels += [k] * len(items)
    return SketchSet(list(classes), sketches, np.array(labels, np.int64))
