"""Stroke data: sketch-rnn stroke-3, QuickDraw ndjson, absolute polylines, and the fixed-length model format.

stroke-3: an (n, 3) array of rows (dx, dy, lift); lift = 1 means the pen leaves the paper after this point.
The first row is the offset of the first point from the origin, so `stroke3_to_polylines` and
`polylines_to_stroke3` are exact inverses.

Model format (what the diffusion model sees): N rows of normalised offsets (dx, dy) / scale and a pen state
per row, DRAW (0), LIFT (1) or END (2, the padding: zero motion). Predicting END is how a sampled sketch says
where it stops (sketch-rnn's stroke-5 idea); sketches longer than N are simplified (RDP with a growing tolerance),
never dropped.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInputError

DRAW, LIFT, END = 0, 1, 2
PEN_STATES = ("draw", "lift", "end")


# ---------------------------------------------------------------- validation and conversions

def validate_stroke3(s: np.ndarray, what: str = "sketch") -> np.ndarray:
    """Return `s` as float32 (n, 3) with lift in {0, 1}, or raise a clear error."""
    try:
        s = np.asarray(s, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadInputError(f"The {what} is not a numeric array.") from None
    if s.ndim != 2 or s.shape[1] != 3:
        raise BadInputError(f"The {what} must be an (n, 3) stroke-3 array, got shape {s.shape}.")
    if len(s) < 2:
        raise BadInputError(f"The {what} has {len(s)} point(s); at least 2 are needed to draw a line.")
    if not np.all(np.isfinite(s)):
        raise BadInputError(f"The {what} contains NaN or infinite offsets.")
    out = s.astype(np.float32)
    out[:, 2] = (out[:, 2] > 0.5).astype(np.float32)
    return out


def stroke3_to_polylines(s: np.ndarray) -> list[np.ndarray]:
    """Absolute (k, 2) polylines, one per stroke."""
    s = np.asarray(s, dtype=np.float64)
    pts = np.cumsum(s[:, :2], axis=0)
    ends = np.flatnonzero(s[:, 2] > 0.5) + 1
    return [p for p in np.split(pts, ends) if len(p)]


def polylines_to_stroke3(polylines: list[np.ndarray]) -> np.ndarray:
    polys = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polylines if len(p)]
    if not polys:
        raise BadInputError("The sketch has no strokes.")
    pts = np.concatenate(polys)
    lift = np.zeros(len(pts))
    lift[np.cumsum([len(p) for p in polys]) - 1] = 1
    deltas = np.diff(pts, axis=0, prepend=np.zeros((1, 2)))
    return np.column_stack([deltas, lift]).astype(np.float32)


def rdp(points: np.ndarray, epsilon: float) -> np.ndarray:
    """Ramer-Douglas-Peucker simplification of one polyline (iterative, keeps both ends)."""
    points = np.asarray(points, dtype=np.float64)
    if len(points) < 3 or epsilon <= 0:
        return points
    keep = np.zeros(len(points), bool)
    keep[[0, -1]] = True
    stack = [(0, len(points) - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        seg = points[b] - points[a]
        rel = points[a + 1:b] - points[a]
        norm = np.hypot(*seg)
        dist = np.abs(seg[0] * rel[:, 1] - seg[1] * rel[:, 0]) / norm if norm > 0 else np.hypot(rel[:, 0], rel[:, 1])
        i = int(np.argmax(dist))
        if dist[i] > epsilon:
            keep[a + 1 + i] = True
            stack += [(a, a + 1 + i), (a + 1 + i, b)]
    return points[keep]


def simplify(s: np.ndarray, epsilon: float) -> np.ndarray:
    return polylines_to_stroke3([rdp(p, epsilon) for p in stroke3_to_polylines(s)])


def fit_length(s: np.ndarray, max_len: int) -> np.ndarray:
    """Simplify with a growing RDP tolerance until the sketch has at most `max_len` points, then give back the
    points of the last tolerance that did not fit, least important first removed (`decimate`), so the sketch
    keeps as close to `max_len` points as it can (a 99-point outline keeps 96, not the ~50 one RDP pass leaves).
    If even that fails (many tiny strokes), drop the shortest strokes."""
    eps, before = 0.5, s
    while len(s) > max_len and eps < 64:
        before, s = s, simplify(s, eps)
        eps *= 1.5
    if len(s) <= max_len < len(before) <= 8 * max_len:
        s = decimate(before, max_len)
    if len(s) > max_len:
        polys = sorted(stroke3_to_polylines(s), key=lambda p: -np.abs(np.diff(p, axis=0)).sum())
        kept, n = [], 0
        for p in polys:
            if n + len(p) <= max_len:
                kept.append(p)
                n += len(p)
        s = polylines_to_stroke3(kept)
    return s


def decimate(s: np.ndarray, max_len: int) -> np.ndarray:
    """Remove interior points, the one whose removal changes the drawing least first (Visvalingam-Whyatt: the
    smallest triangle with its two neighbours), until at most `max_len` points are left; stroke ends stay."""
    polys = [p.copy() for p in stroke3_to_polylines(s)]
    while sum(len(p) for p in polys) > max_len:
        best = None
        for k, p in enumerate(polys):
            if len(p) < 3:
                continue
            a, b, c = p[:-2], p[1:-1], p[2:]
            area = np.abs((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1]))
            i = int(np.argmin(area))
            if best is None or area[i] < best[0]:
                best = (area[i], k, i + 1)
        if best is None:  # only stroke ends left
            break
        polys[best[1]] = np.delete(polys[best[1]], best[2], axis=0)
    out = polylines_to_stroke3(polys)
    out[0, :2] = s[0, :2] if len(s) else 0
    return out


# ---------------------------------------------------------------- fixed-length model format

@dataclass
class Batch:
    offsets: np.ndarray  # (B, N, 2) float32, normalised
    pen: np.ndarray  # (B, N) int64 in {DRAW, LIFT, END}
    lengths: np.ndarray  # (B,) real points per sketch


def to_fixed(s: np.ndarray, max_len: int, scale: float) -> tuple[np.ndarray, np.ndarray, int]:
    s = fit_length(validate_stroke3(s), max_len)
    n = len(s)
    offsets = np.zeros((max_len, 2), np.float32)
    offsets[:n] = s[:, :2] / scale
    pen = np.full(max_len, END, np.int64)
    pen[:n] = np.where(s[:, 2] > 0.5, LIFT, DRAW)
    pen[n - 1] = LIFT  # the last real point always ends its stroke
    return offsets, pen, n


def fixed_length(pen: np.ndarray) -> int:
    """Where a decoded sketch ends: END is absorbing, so the sketch ends where the final run of END states
    begins; a stray END before later drawn points does not cut the sketch short."""
    drawn = np.flatnonzero(np.asarray(pen) != END)
    return int(drawn[-1]) + 1 if len(drawn) else 0


def from_fixed(offsets: np.ndarray, pen: np.ndarray, scale: float, dots: bool = False) -> np.ndarray:
    """Model output -> stroke-3, ending where the final run of END begins (nothing after it is drawn); a stray
    END inside the sketch lifts the pen there. One-point strokes are dropped unless `dots`: QuickDraw has none
    (0 of 8,289 strokes in a tenth of the training split), so a lone point between two lifts is a decoding speck."""
    pen = np.asarray(pen)
    n = max(fixed_length(pen), 2)  # a sketch with no real points still returns a drawable (tiny) line
    s = np.zeros((n, 3), np.float32)
    s[:, :2] = np.asarray(offsets[:n], dtype=np.float32) * scale
    s[:, 2] = (pen[:n] != DRAW).astype(np.float32)
    s[-1, 2] = 1.0
    return s if dots else drop_dots(s)


def drop_dots(s: np.ndarray) -> np.ndarray:
    """Remove one-point strokes, carrying each one's offset to the next point so everything else stays put."""
    lifted = s[:, 2] > 0.5
    dot = np.r_[True, lifted[:-1]] & lifted
    if not dot.any() or (~dot).sum() < 2:
        return s
    kept, carry = [], np.zeros(2, np.float32)
    for row, is_dot in zip(s, dot):
        if is_dot:
            carry += row[:2]
            continue
        kept.append(np.r_[row[:2] + carry, row[2]].astype(np.float32))
        carry[:] = 0
    out = np.stack(kept)
    out[-1, 2] = 1.0
    return out


def batch_fixed(sketches: list[np.ndarray], max_len: int, scale: float) -> Batch:
    parts = [to_fixed(s, max_len, scale) for s in sketches]
    return Batch(np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts]),
                 np.array([p[2] for p in parts], np.int64))


def offset_scale(sketches: list[np.ndarray]) -> float:
    """The training std of dx, dy (the pen column does not enter it, unlike the official code)."""
    rows = np.concatenate([np.asarray(s, np.float64)[:, :2] for s in sketches])
    return float(rows.std())


# ---------------------------------------------------------------- files

class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Object arrays in sketch-rnn .npz files are pickles; allow numpy arrays and nothing else, so a crafted
    upload cannot run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_npy(raw: bytes) -> np.ndarray:
    f = io.BytesIO(raw)
    version = np.lib.format.read_magic(f)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(f)
    if dtype.hasobject:
        arr = _NumpyOnlyUnpickler(f, encoding="latin1").load()
        return np.asarray(arr, dtype=object).reshape(shape)
    data = np.frombuffer(f.read(), dtype=dtype, count=int(np.prod(shape)))
    return data.reshape(shape, order="F" if fortran else "C")


def load_npz(path: str | Path, split: str = "train") -> list[np.ndarray]:
    """Sketches of one split of a sketch-rnn stroke-3 .npz, validated, as float32 (n, 3) arrays."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = {n[:-4]: n for n in zf.namelist() if n.endswith(".npy")}
            if split not in names:
                raise BadInputError(f"{path.name} has no '{split}' array (it has: {', '.join(sorted(names)) or 'none'}).")
            arr = _read_npy(zf.read(names[split]))
    except BadInputError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise BadInputError(f"{path.name} is not a readable sketch-rnn .npz file ({exc}).") from None
    if arr.ndim == 0:  # a single number: nothing to iterate over
        raise BadInputError(f"{path.name}'s '{split}' array holds one value, not a list of sketches.")
    return [validate_stroke3(s, what=f"sketch {i} of {path.name}") for i, s in enumerate(arr)]


def save_npz(path: str | Path, sketches: list[np.ndarray], split: str = "train") -> None:
    arr = np.empty(len(sketches), dtype=object)
    for i, s in enumerate(sketches):
        arr[i] = np.asarray(s, dtype=np.int16 if np.allclose(s, np.round(s)) else np.float32)
    np.savez_compressed(path, **{split: arr})


def parse_ndjson_drawing(drawing) -> np.ndarray:
    """QuickDraw `drawing`: a list of strokes [[x...], [y...], (t or labels...)], raw or simplified."""
    polys = []
    for stroke in drawing:
        xs, ys = np.asarray(stroke[0], np.float64), np.asarray(stroke[1], np.float64)
        if xs.shape != ys.shape or xs.ndim != 1:
            raise ValueError("x and y lists differ in length")
        polys.append(np.column_stack([xs, ys]))
    return validate_stroke3(polylines_to_stroke3(polys))


def load_ndjson(path: str | Path, epsilon: float = 2.0) -> tuple[list[np.ndarray], int]:
    """Sketches of a QuickDraw .ndjson file (one JSON object with a `drawing` per line), RDP-simplified with
    `epsilon` (QuickDraw's own simplification uses 2.0; 0 keeps raw points). Returns (sketches, skipped):
    malformed lines are skipped and counted, not fatal."""
    sketches, skipped = [], 0
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"Could not read {path}: {exc}") from None
    for line in lines:
        if not line.strip():
            continue
        try:
            s = parse_ndjson_drawing(json.loads(line)["drawing"])
            sketches.append(simplify(s, epsilon) if epsilon > 0 else s)
        except (ValueError, KeyError, TypeError, IndexError, BadInputError):
            skipped += 1
    if not sketches:
        raise BadInputError(f"{Path(path).name} has no readable drawings ({skipped} malformed lines).")
    return sketches, skipped


def random_affine(s: np.ndarray, rng: np.random.Generator, max_rotate_deg: float = 12.0,
                  scale_range: tuple[float, float] = (0.85, 1.15)) -> np.ndarray:
    """A random rotation and anisotropic scaling of the offsets (data augmentation); pen column untouched."""
    a = np.deg2rad(rng.uniform(-max_rotate_deg, max_rotate_deg))
    sx, sy = rng.uniform(*scale_range, size=2)
    m = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) @ np.diag([sx, sy])
    out = np.array(s, dtype=np.float32, copy=True)
    out[:, :2] = out[:, :2] @ m.T.astype(np.float32)
    return out
