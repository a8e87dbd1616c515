"""Distil any photo -> sketch teacher (HED, PiDiNet, XDoG, Canny, or a trained style) into a SketchStudent.

Two stages, both resumable and both runnable under HF Accelerate (one process or many):

1. cache: every photo of a folder (unreadable files skipped and counted) at each requested size goes through the
   teacher once; photo and teacher sketch are written as PNGs into the cache folder. Work is split by index
   (process r of n takes jobs r, r + n, ...), so n processes write exactly the pairs one process would, each
   once. A photo the teacher fails on is recorded as failed (and skipped), the rest go on; a rerun skips what
   is already there. Training takes every pair in the cache, so pairs of other photos can join it
   (views.py makes zoomed and turned views of the same photos for that). `--mirror-teacher` caches the teacher's
   sketch averaged with that of the mirrored photo (mirror.py): with `--teacher fast` the shipped student's
   two-pass sketch: pseudo pairs for its own single pass (part of run 16's data, checkpoints/README).
2. train: random crops (with flips) of the cached pairs, L1 + LPIPS(alex) (+ an optional edge-weighted L1) between
   the student's sketch and the teacher's. The global batch of step s is a pure function of (seed, s), and
   process r takes its slots r, r + n, ...: no duplicated samples, and a resumed run sees the batches it would
   have seen. Gradients are averaged across processes (DDP through Accelerate); only the main process writes
   the resumable state (safetensors) and the fp16 export.

CLI (one process, or e.g. `accelerate launch --num_processes 8 -m diffsketch_core.style.distill ...` on a cluster):

    python -m diffsketch_core.style.distill --photos photos/ --teacher hed --cache cache/ --run-dir runs/student \
        --sizes native,512x512 --steps 2000 --crop 256 --batch 8 --out checkpoints/student_hed

`--init-from checkpoints/student_hed` warm-starts a new run from a saved student (its weights and architecture,
a fresh optimiser and LR schedule), so a longer distillation continues from the shipped weights; with `--widths`
or `--blocks` it is first grown to that size, still computing what it did (style/grow.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import cli, mirror
from ..checkpoints import save_fp16
from ..errors import BadInputError, DiffSketchError, check_settings
from ..images import load_image
from ..extractors.student import SketchStudent, load_student
from .grow import check_blocks, check_widths, deepen, widen

PHOTO_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
Teacher = Callable[[Image.Image], np.ndarray]  # RGB photo -> ink (H, W) float 0..1, 1 = line
Events = Callable[[dict], None]


class _NeverCancel:
    def is_set(self) -> bool:
        return False


# ---------------------------------------------------------------- photos and teachers


@dataclass
class PhotoFolder:
    photos: list[Path]
    skipped: list[str] = field(default_factory=list)  # "name: why" for each file that is not a usable image

    def skipped_note(self) -> str:
        """'N files skipped: name: why; ...' (the first five), for a command's note."""
        return f"{len(self.skipped)} files skipped: " + "; ".join(self.skipped[:5])


def scan_photos(folder: str | Path, check: bool = True) -> PhotoFolder:
    """The images in `folder` (recursively, sorted), each opened once when `check` so corrupt files are
    skipped up front and counted; an empty result is an error."""
    root = Path(folder)
    if not root.is_dir():
        raise BadInputError(f"Photo folder not found: {root}")
    found = PhotoFolder([])
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix.lower() not in PHOTO_SUFFIXES:
            found.skipped.append(f"{path.name}: not an image file")
            continue
        if check:
            try:
                with Image.open(path) as img:
                    img.load()  # decodes the data, so truncated files fail here, not mid-training
            except Exception as exc:  # Pillow raises many types for broken files
                found.skipped.append(f"{path.name}: unreadable ({type(exc).__name__})")
                continue
        found.photos.append(path)
    if not found.photos:
        raise BadInputError(f"No usable photos in {root} ({len(found.skipped)} files skipped). "
                            f"Add PNG or JPEG photos.")
    return found


def classic_teacher(method: str) -> Teacher:
    """A classic extractor as a teacher; a missing one fails now with its own message."""
    from ..extractors import EXTRACTORS, needs

    method = method.lower()
    if method not in EXTRACTORS:
        raise BadInputError(f"Unknown teacher {method!r}; choose one of {', '.join(EXTRACTORS)} or a style folder.")
    missing = needs(method)
    if missing:
        raise DiffSketchError(missing)
    return EXTRACTORS[method]


def style_teacher(style_folder: str | Path) -> Teacher:
    """A trained style as a teacher, its sketch as ink: a CPU style on the CNN backbone it names, an SD style on
    DIFFSKETCH_SD_MODEL (slow: one backbone pass per photo). The folder is checked before any backbone loads."""
    from .store import attach, load_style

    style = load_style(style_folder)
    if style.kind == "cnn":
        from ..diffusion.cnn import load_cnn_backbone, source_for
        from .cnn_photo2sketch import CNNPhotoToSketch

        named = dict(style.generator.config.backbone or {})
        padding = named.get("padding") if named.get("padding") in ("reflect", "zeros") else "reflect"
        backbone = load_cnn_backbone(source_for(named), padding=padding)
        return sketcher_teacher(CNNPhotoToSketch(attach(style, backbone), backbone))
    from ..diffusion.backbone import load_backbone
    from .photo2sketch import PhotoToSketch

    backbone = load_backbone()  # DIFFSKETCH_SD_MODEL: the backbone the style was trained on
    return sketcher_teacher(PhotoToSketch(attach(style, backbone), backbone))


def sketcher_teacher(sketcher: Callable) -> Teacher:
    """Anything that maps a photo to an object with `.sketch` (PhotoToSketch, a CNN style's model) as a teacher."""

    def teach(img: Image.Image) -> np.ndarray:
        return 1.0 - np.asarray(sketcher(img).sketch.convert("L"), dtype=np.float32) / 255.0

    return teach


def make_teacher(name: str) -> Teacher:
    return style_teacher(name) if Path(name).is_dir() else classic_teacher(name)


def parse_sizes(text: str) -> list[tuple[int, int] | None]:
    """"native,512x512,0.5,max768" -> [None, (512, 512), 0.5, 768]: None = the photo's own size, WxH = that
    size, a fraction = scaled, an int = the long side brought down to at most that."""
    out: list[Any] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            out.append(_parse_size(part))
        except BadInputError:
            raise
        except ValueError:  # int() / float() of what is not a number
            raise BadInputError(f"Size {part!r} is not native, WxH, maxN or a scale (e.g. native,512x512,0.5).") \
                from None
    if not out:
        raise BadInputError("No sizes given (e.g. --sizes native,512x512).")
    return out


def _parse_size(part: str):
    if part == "native":
        return None
    if part.startswith("max"):
        side = int(part[3:])
        if side < 16:
            raise BadInputError(f"Size {part} is too small (16 px at least).")
        return side
    if "x" in part:
        w, h = (int(v) for v in part.split("x"))
        if min(w, h) < 16:
            raise BadInputError(f"Size {part} is too small (16 px at least).")
        return w, h
    scale = float(part)
    if not 0.05 <= scale <= 4:
        raise BadInputError(f"Scale {part} is outside 0.05..4.")
    return scale


def _resized(img: Image.Image, size) -> Image.Image:
    if size is None:
        return img
    if isinstance(size, int):  # long side at most `size`
        if max(img.size) <= size:
            return img
        s = size / max(img.size)
        size = (max(16, round(img.width * s)), max(16, round(img.height * s)))
    elif isinstance(size, float):
        size = (max(16, round(img.width * size)), max(16, round(img.height * size)))
    return img.resize(size, Image.Resampling.LANCZOS) if img.size != tuple(size) else img


def _size_tag(size) -> str:
    if size is None:
        return "native"
    if isinstance(size, tuple):
        return f"{size[0]}x{size[1]}"
    return f"max{size}" if isinstance(size, int) else f"s{size:g}"


# ---------------------------------------------------------------- stage 1: teacher cache


@dataclass
class CacheReport:
    written: int = 0
    reused: int = 0
    failed: list[str] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)
    seconds: float = 0.0


def cache_jobs(photos: Sequence[Path], sizes: Sequence) -> list[tuple[Path, Any, str]]:
    """(photo, size, key) for every pair, in one fixed order; the key names the cache files (the path hash
    keeps two photos of the same name in different subfolders apart)."""
    jobs = []
    for p in photos:
        h = hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:8]
        for s in sizes:
            jobs.append((p, s, f"{p.stem}-{h}-{_size_tag(s)}"))
    return jobs


def build_cache(photos: Sequence[Path], teacher: Teacher, cache: str | Path, sizes: Sequence = (None,),
                rank: int = 0, world: int = 1, on_event: Events | None = None, cancel=None) -> CacheReport:
    """Write this process's share of the (photo, teacher sketch) pairs into `cache` (see the module doc)."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    cancel = cancel or _NeverCancel()
    report, t0 = CacheReport(), time.time()
    jobs = cache_jobs(photos, sizes)
    mine = jobs[rank::world]
    for i, (path, size, key) in enumerate(mine):
        if cancel.is_set():
            break
        photo_png, ink_png, failed = cache / f"{key}.photo.png", cache / f"{key}.ink.png", cache / f"{key}.failed"
        if ink_png.is_file() and photo_png.is_file():
            report.reused += 1
            continue
        if failed.is_file():
            report.failed.append(f"{path.name}: {failed.read_text().strip()}")
            continue
        try:
            img = _resized(load_image(path).image, size)
            ink = np.asarray(teacher(img), dtype=np.float32)
            if ink.shape != (img.height, img.width) or not np.all(np.isfinite(ink)):
                raise ValueError(f"teacher returned {ink.shape} for a {img.width}x{img.height} photo")
        except Exception as exc:  # one bad photo or teacher failure must not end a long run
            why = f"{type(exc).__name__}: {exc}"
            failed.write_text(why)
            report.failed.append(f"{path.name}: {why}")
            continue
        _atomic_png(img, photo_png)
        _atomic_png(Image.fromarray(np.round(np.clip(ink, 0, 1) * 255).astype(np.uint8), "L"), ink_png)
        report.written += 1
        if on_event:
            on_event({"kind": "cache", "done": i + 1, "total": len(mine), "seconds": time.time() - t0})
    report.seconds = time.time() - t0
    return report


def _atomic_png(img: Image.Image, path: Path) -> None:
    # write then rename, so an interrupted run never leaves half a PNG that a resume would take as done
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    img.save(tmp, format="PNG")
    os.replace(tmp, path)


def cached_pairs(cache: str | Path) -> list[str]:
    keys = sorted(p.name[: -len(".ink.png")] for p in Path(cache).glob("*.ink.png"))
    return [k for k in keys if (Path(cache) / f"{k}.photo.png").is_file()]


# ---------------------------------------------------------------- stage 2: student training


@dataclass
class TrainConfig:
    steps: int = 2000
    batch: int = 8          # global batch (split across processes)
    crop: int = 256
    lr: float = 2e-3
    lr_end: float = 2e-5
    warmup: int = 50
    lpips: float = 0.5
    lpips_samples: int = 2  # LPIPS on the first few crops of each process's batch: AlexNet's backward costs more than the student's
    edge: float = 0.0       # extra L1 weight on the teacher's lines: ink-weighted L1
    seed: int = 0
    save_every: int = 200
    widths: tuple[int, ...] = (16, 32, 64, 128)
    blocks: tuple[int, ...] = (0, 1, 2, 3)
    head: int = 16
    minutes: float = 0.0    # > 0: after a short calibration, cut `steps` to what fits in this wall-clock budget
    init_from: str | None = None  # a saved student folder: a new run starts from its weights and architecture
    widen_to: tuple[int, ...] | None = None  # with init_from: widen it to these widths first (style/grow.py)
    deepen_to: tuple[int, ...] | None = None  # with init_from: then give its levels these many blocks (grow.py)

    def __post_init__(self):
        check_settings("Distillation settings", [
            (self.steps >= 1, f"steps must be at least 1, not {self.steps}"),
            (self.batch >= 1, f"batch must be at least 1, not {self.batch}"),
            (self.crop >= 16, f"crop must be at least 16 px, not {self.crop}"),
            (self.lr > 0, f"lr must be above 0, not {self.lr}"),
            (min(self.lpips, self.edge, self.lpips_samples, self.minutes) >= 0,
             "lpips, edge, lpips-samples and minutes must not be negative"),
            (self.save_every >= 1, f"save-every must be at least 1, not {self.save_every}"),
            (len(self.widths) == len(self.blocks) >= 1,
             f"widths {self.widths} and blocks {self.blocks} must have the same, non-zero length"),
            (min(self.widths + (self.widen_to or (1,))) >= 1 and min(self.blocks + (self.deepen_to or ())) >= 0,
             "widths must be at least 1 and blocks at least 0")])


class PairSource:
    """Cached pairs in memory as uint8 arrays; `sample(step, slots)` gives the crops of those global batch slots."""

    def __init__(self, cache: str | Path, keys: Sequence[str] | None = None):
        cache = Path(cache)
        self.keys = list(keys) if keys is not None else cached_pairs(cache)
        if not self.keys:
            raise BadInputError(f"No cached teacher pairs in {cache}; run the cache stage first.")
        self.photos = [np.asarray(Image.open(cache / f"{k}.photo.png").convert("RGB")) for k in self.keys]
        self.inks = [np.asarray(Image.open(cache / f"{k}.ink.png").convert("L")) for k in self.keys]

    def sample(self, seed: int, step: int, slots: Sequence[int], global_batch: int, crop: int):
        xs, ys = [], []
        for slot in slots:
            rng = random.Random(f"{seed}/{step}/{slot}")  # same crop for a slot whichever process draws it
            # each pass over the pairs is a fresh permutation, so every pair is seen once per epoch
            per_epoch = max(1, math.ceil(len(self.keys) / global_batch))
            epoch, pos = divmod(step, per_epoch)
            order = list(range(len(self.keys)))
            random.Random(f"{seed}/epoch{epoch}").shuffle(order)
            idx = order[(pos * global_batch + slot) % len(order)]
            photo, ink = self.photos[idx], self.inks[idx]
            h, w = ink.shape
            c = min(crop, h, w)
            top, left = rng.randint(0, h - c), rng.randint(0, w - c)
            p = photo[top:top + c, left:left + c]
            k = ink[top:top + c, left:left + c]
            if rng.random() < 0.5:
                p, k = p[:, ::-1], k[:, ::-1]
            x = torch.from_numpy(p.copy()).permute(2, 0, 1).float() / 255
            y = torch.from_numpy(k.copy()).float()[None] / 255
            if c < crop:  # a photo smaller than the crop: stretch up (rare; tiny test photos)
                x = F.interpolate(x[None], size=(crop, crop), mode="bilinear", align_corners=False)[0]
                y = F.interpolate(y[None], size=(crop, crop), mode="bilinear", align_corners=False)[0]
            xs.append(x)
            ys.append(y)
        return torch.stack(xs), torch.stack(ys)


def lr_at(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr_end + 0.5 * (cfg.lr - cfg.lr_end) * (1 + math.cos(math.pi * min(1.0, t)))


def distill_loss(pred: torch.Tensor, target: torch.Tensor, lpips_net, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """pred, target: (B, 1, H, W) ink in 0..1. LPIPS compares them as sketches (paper white, -1..1, 3 channels)."""
    parts = {"l1": (pred - target).abs().mean()}
    if cfg.edge > 0:
        parts["edge"] = cfg.edge * ((pred - target).abs() * target).mean()
    if cfg.lpips > 0 and lpips_net is not None:
        n = cfg.lpips_samples or pred.shape[0]
        a, b = (1 - 2 * pred[:n]).expand(-1, 3, -1, -1), (1 - 2 * target[:n]).expand(-1, 3, -1, -1)
        parts["lpips"] = cfg.lpips * lpips_net(a, b).mean()
    parts["loss"] = sum(parts.values())
    return parts


# ---- resumable state in safetensors (no pickle): model, optimizer tensors, and a JSON of the rest


def save_state(run: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, meta: dict) -> None:
    from safetensors.torch import save_file

    run.mkdir(parents=True, exist_ok=True)
    sd = opt.state_dict()
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    for pid, st in sd["state"].items():
        for name, v in st.items():
            tensors[f"opt.{pid}.{name}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().contiguous()
    tmp = run / "state.safetensors.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, run / "state.safetensors")
    meta = dict(meta, param_groups=sd["param_groups"])
    (run / "state.json.tmp").write_text(json.dumps(meta, indent=1))
    os.replace(run / "state.json.tmp", run / "state.json")


def load_state(run: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict | None:
    from safetensors.torch import load_file

    if not (run / "state.safetensors").is_file() or not (run / "state.json").is_file():
        return None
    meta = json.loads((run / "state.json").read_text())
    tensors = load_file(str(run / "state.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta.pop("param_groups")})
    return meta


def train_student(cache: str | Path, run: str | Path, cfg: TrainConfig, on_event: Events | None = None,
                  cancel=None, accelerator=None, lpips_net=None, keys: Sequence[str] | None = None) -> SketchStudent:
    """Train (or resume) a student on the cached pairs; returns the unwrapped model (fp32). With an
    `accelerator` each process draws its own slots of every global batch and gradients are averaged."""
    from accelerate import Accelerator

    run = Path(run)
    cancel = cancel or _NeverCancel()
    acc = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    world, rank = acc.num_processes, acc.process_index
    if cfg.batch % world:
        raise BadInputError(f"The batch ({cfg.batch}) must divide evenly across {world} processes.")
    source = PairSource(cache, keys)
    smallest = min(min(i.shape) for i in source.inks)
    if smallest < cfg.crop:  # small photos (an app upload): crop what they have instead of stretching them up
        from dataclasses import replace

        cfg = replace(cfg, crop=max(16, smallest))
    model, cfg = initial_student(run, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    meta = load_state(run, model, opt) or {"step": 0, "history": [], "seconds": 0.0}
    if "calibrated_at" in meta:  # a resumed budgeted run keeps the step count it chose
        from dataclasses import replace

        cfg = replace(cfg, steps=int(meta["config"]["steps"]))
    model, opt = acc.prepare(model, opt)
    if lpips_net is None and cfg.lpips > 0:
        from ..perceptual import load_lpips

        lpips_net = load_lpips()
    if lpips_net is not None:
        lpips_net = lpips_net.to(acc.device)
    step, t0, seconds0 = int(meta["step"]), time.time(), float(meta.get("seconds", 0.0))
    start = step
    history: list = meta.get("history", [])
    running: dict[str, float] = {}
    slots = list(range(rank, cfg.batch, world))
    every = max(1, min(25, cfg.steps // 20))  # progress (and the loss history) 20 times a run, at most every 25 steps

    def checkpoint() -> None:
        if acc.is_main_process:
            save_state(run, acc.unwrap_model(model), opt,
                       {"step": step, "history": history, "seconds": seconds0 + time.time() - t0,
                        "config": _cfg_json(cfg), "pairs": len(source.keys), "processes": world,
                        **({"calibrated_at": meta["calibrated_at"]} if "calibrated_at" in meta else {})})
        acc.wait_for_everyone()

    model.train()
    while step < cfg.steps:
        # every process must agree to stop, or DDP would wait forever for the one that did not
        stop = torch.tensor([1.0 if cancel.is_set() else 0.0], device=acc.device)
        if acc.reduce(stop, reduction="sum").item() > 0:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step)
        x, y = source.sample(cfg.seed, step, slots, cfg.batch, cfg.crop)
        parts = distill_loss(model(x.to(acc.device)), y.to(acc.device), lpips_net, cfg)
        opt.zero_grad(set_to_none=True)
        acc.backward(parts["loss"])
        acc.clip_grad_norm_(model.parameters(), 1.0)  # a rare huge-gradient crop must not wreck a long unattended run
        opt.step()
        step += 1
        for k, v in parts.items():
            running[k] = running.get(k, 0.0) + float(v.detach())
        if step % every == 0 or step == cfg.steps:
            n = every if step % every == 0 else step % every
            row = {"step": step, **{k: round(v / n, 5) for k, v in running.items()},
                   "seconds": round(seconds0 + time.time() - t0, 1)}
            history.append(row)
            running = {}
            if on_event:
                on_event({"kind": "train", "step": step, "total": cfg.steps, **row})
        if cfg.minutes > 0 and "calibrated_at" not in meta and step - start == CALIBRATION_STEPS:
            cfg = _fit_steps(cfg, step, seconds0 + time.time() - t0, (time.time() - t0) / CALIBRATION_STEPS, acc)
            meta["calibrated_at"] = step
        if step % cfg.save_every == 0:
            checkpoint()
    checkpoint()
    return acc.unwrap_model(model).eval()


CALIBRATION_STEPS = 20


def initial_student(run: Path, cfg: TrainConfig) -> tuple[SketchStudent, TrainConfig]:
    """The model a run starts from, and cfg with its architecture. A run with saved state keeps the architecture
    it was saved with (its weights are loaded next); a new run with `init_from` takes that student's weights and
    architecture, with a fresh optimiser and LR schedule (a warm start, not a resume); else random weights from
    the seed (the same on every process)."""
    from dataclasses import replace

    state = run / "state.json"
    if state.is_file():
        saved = json.loads(state.read_text())["config"]
        cfg = replace(cfg, widths=tuple(saved["widths"]), blocks=tuple(saved["blocks"]), head=int(saved["head"]),
                      init_from=saved.get("init_from"))
    elif cfg.init_from:
        model = load_student(cfg.init_from)
        if cfg.widen_to:
            model = widen(model, cfg.widen_to, cfg.seed)
        if cfg.deepen_to:
            model = deepen(model, cfg.deepen_to)
        model = model.train().requires_grad_(True)
        c = model.config
        return model, replace(cfg, widths=tuple(int(w) for w in c.widths), blocks=tuple(int(b) for b in c.blocks),
                              head=int(c.head))
    torch.manual_seed(cfg.seed)
    return SketchStudent(widths=cfg.widths, blocks=cfg.blocks, head=cfg.head), cfg


def _fit_steps(cfg: TrainConfig, step: int, spent_s: float, step_s: float, acc) -> TrainConfig:
    """The step count that fits the time budget at the measured speed (the main process decides, so every
    process keeps the same schedule); the LR schedule is still in warm-up when this happens."""
    from dataclasses import replace

    fit = torch.tensor([float(step + (cfg.minutes * 60 - spent_s) / step_s)], device=acc.device)
    fit = acc.reduce(fit, reduction="mean")  # identical on every process after this
    return replace(cfg, steps=max(step + 1, min(cfg.steps, int(fit.item()))))


def _cfg_json(cfg: TrainConfig) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()}


def export(model: SketchStudent, out: str | Path, record: dict) -> Path:
    """The shipped form: fp16 safetensors + config.json + training.json (what it learnt from, and how long)."""
    out = Path(out)
    save_fp16(model, out)
    (out / "training.json").write_text(json.dumps(record, indent=1))
    return out


# ---------------------------------------------------------------- one call for the app


def estimate_seconds(n_photos: int, steps: int, teacher_s_per_photo: float, sizes: int = 1,
                     step_s: float = 1.5) -> float:
    """A rough wall-clock estimate: the teacher once per photo and size, then `steps` training steps."""
    return n_photos * sizes * teacher_s_per_photo + steps * step_s


def distill(photos: Sequence[Path] | str | Path, teacher: Teacher, work: str | Path, cfg: TrainConfig,
            sizes: Sequence = (None,), on_event: Events | None = None, cancel=None, lpips_net=None) -> dict:
    """Cache, train and export in one process (the app's "Distil this style"). Returns a summary with the
    student folder (work/student) once training finished, or None in "student" when stopped early."""
    cancel = cancel or _NeverCancel()
    work = Path(work)
    skipped: list[str] = []
    if not isinstance(photos, (list, tuple)):
        found = scan_photos(photos)
        photos, skipped = found.photos, found.skipped
    report = build_cache(photos, teacher, work / "cache", sizes, on_event=on_event, cancel=cancel)
    summary = {"photos": len(photos), "skipped_files": skipped, "failed": report.failed,
               "pairs": len(cached_pairs(work / "cache")), "student": None}
    if cancel.is_set():
        return summary
    if not summary["pairs"]:
        raise BadInputError(f"The teacher failed on every photo ({report.failed[:1]}).")
    model = train_student(work / "cache", work / "run", cfg, on_event, cancel, lpips_net=lpips_net)
    meta = json.loads((work / "run" / "state.json").read_text())
    if meta["step"] >= meta["config"]["steps"]:
        summary["student"] = str(export(model, work / "student", {**summary, "steps": meta["step"],
                                                                   "train_seconds": meta["seconds"]}))
    summary["step"] = meta["step"]
    return summary


# ---------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = cli.parser("diffsketch_core.style.distill", __doc__)
    p.add_argument("--photos", required=True, help="folder of photos (searched recursively)")
    p.add_argument("--teacher", default="hed", help="hed | pidinet | xdog | canny | fast | a style folder (SD or CPU)")
    p.add_argument("--mirror-teacher", action="store_true", help="average the teacher's sketch with that of the "
                   "mirrored photo (mirror.py; twice the teacher time)")
    p.add_argument("--cache", required=True, help="folder for the teacher pairs (resumable)")
    p.add_argument("--run-dir", dest="run", help="folder for the resumable training state; omit to only build the cache")
    p.add_argument("--out", help="export the trained student here (fp16 safetensors + config.json)")
    p.add_argument("--sizes", default="native", help="photo sizes for the teacher: native, WxH or a scale, comma-separated")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--minutes", type=float, default=0.0, help="wall-clock budget for training; fewer steps if needed")
    p.add_argument("--lpips-samples", type=int, default=2, help="crops per process that get the LPIPS term (0 = all)")
    p.add_argument("--batch", type=int, default=8, help="global batch, split across processes")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--lpips", type=float, default=0.5, help="LPIPS weight (0 = L1 only)")
    p.add_argument("--edge", type=float, default=0.0, help="ink-weighted L1 weight")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--widths", default=None, help="channels per level (default 16,32,64,128); with --init-from: widen "
                                                  "the saved student to these, keeping what it computes (Net2Wider)")
    p.add_argument("--blocks", default=None, help="residual blocks per level (default 0,1,2,3); with --init-from: "
                                                  "add blocks that start as the identity, keeping what it computes")
    p.add_argument("--init-from", default=None,
                   help="warm-start a new run from a saved student (e.g. checkpoints/student_hed): its weights and "
                        "architecture, a fresh LR schedule; ignored when --run-dir already holds a run")
    return p


def _main(args: argparse.Namespace) -> int:
    from accelerate import Accelerator

    found = scan_photos(args.photos)
    sizes = parse_sizes(args.sizes)
    warm = _warm_start_record(args)  # checked before the (long) cache stage, as are the settings
    cfg = _train_config(args) if args.run else None
    acc = Accelerator(cpu=not torch.cuda.is_available())
    if acc.is_main_process and found.skipped:
        cli.note(found.skipped_note())
    teacher = make_teacher(args.teacher)
    if args.mirror_teacher:
        teacher = mirror.averaged_sketcher(teacher)
    total = len(found.photos) * len(sizes)

    def cache_event(e: dict) -> None:
        if acc.is_main_process and (e["done"] % 10 == 0 or e["done"] == e["total"]):
            cli.progress(e["done"], e["total"], f"teacher pairs (process 0 of {acc.num_processes})", e["seconds"])

    report = build_cache(found.photos, teacher, args.cache, sizes, acc.process_index, acc.num_processes, cache_event)
    acc.wait_for_everyone()
    failed = sorted(p.name for p in Path(args.cache).glob("*.failed"))
    if acc.is_main_process:
        done = sum((Path(args.cache) / f"{k}.ink.png").is_file() for _, _, k in cache_jobs(found.photos, sizes))
        print(f"cache: {done}/{total} pairs ({len(cached_pairs(args.cache))} in the cache, all used in training); "
              f"this process wrote {report.written}, reused {report.reused}; {len(failed)} failed", flush=True)
    if cfg is None:
        return 0

    def train_event(e: dict) -> None:
        if acc.is_main_process:
            losses = " ".join(f"{k}={e[k]:.4f}" for k in ("loss", "l1", "lpips", "edge") if k in e)
            cli.progress(e["step"], e["total"], losses, e["seconds"])

    model = train_student(args.cache, args.run, cfg, train_event, accelerator=acc)
    meta = json.loads((Path(args.run) / "state.json").read_text())
    if args.out and acc.is_main_process and meta["step"] >= meta["config"]["steps"]:
        rec = {"teacher": args.teacher, "mirror_teacher": args.mirror_teacher, "photos": str(args.photos),
               "sizes": args.sizes, "pairs": meta["pairs"], "skipped_files": len(found.skipped), "failed": len(failed),
               "steps": meta["step"], "train_seconds": round(meta["seconds"]), "processes": meta["processes"],
               "config": meta["config"], "final": meta["history"][-1] if meta["history"] else None,
               **({"warm_start": warm} if warm else {})}
        export(model, args.out, rec)
        print(f"student written to {args.out}", flush=True)
    acc.wait_for_everyone()
    acc.end_training()  # closes the process group on every process before they exit (see strokes/train.py)
    return 0


def _train_config(args: argparse.Namespace) -> TrainConfig:
    # with --init-from the architecture is the saved student's, grown to --widths / --blocks; otherwise they set it
    levels = {k: _levels(v) for k, v in (("widths", args.widths), ("blocks", args.blocks)) if v}
    shape = {"widen_to": levels.get("widths"), "deepen_to": levels.get("blocks")} if args.init_from else levels
    return TrainConfig(steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr, lpips=args.lpips,
                       lpips_samples=args.lpips_samples, minutes=args.minutes, edge=args.edge, seed=args.seed,
                       save_every=args.save_every, init_from=args.init_from, **shape)


def _warm_start_record(args: argparse.Namespace) -> dict | None:
    """What --init-from starts from (its own training record, so the export says the whole history), after
    checking that it loads; None without --init-from."""
    if not args.init_from:
        return None
    saved = load_student(args.init_from)  # a folder that is not a student is refused here, not after the cache stage
    widths = check_widths(saved, _levels(args.widths)) if args.widths else None  # refused here too, before the cache
    blocks = check_blocks(saved, _levels(args.blocks)) if args.blocks else None
    rec = Path(args.init_from) / "training.json"
    before = json.loads(rec.read_text()) if rec.is_file() else {}
    return {"from": str(args.init_from), "steps": before.get("steps"), "train_seconds": before.get("train_seconds"),
            "warm_start": before.get("warm_start"),
            **({"widened_to": list(widths)} if widths else {}), **({"deepened_to": list(blocks)} if blocks else {})}


def _levels(text: str) -> tuple[int, ...]:
    """'16,32,64' -> (16, 32, 64): --widths and --blocks."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise BadInputError(f"{text!r} is not a comma-separated list of whole numbers (e.g. 16,32,64,128).") from None


def main(argv: list[str] | None = None) -> int:
    return cli.run(_parser(), _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
