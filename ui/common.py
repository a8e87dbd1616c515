"""What the tabs share: per-session folders and cancel flags, the error mapping, banners, cached models, and the
boundary: typed inputs (numbers, seeds, uploads) and Gradio's own pre-processing turned into sentences, and the
sweep that removes the files requests leave behind."""

from __future__ import annotations

import contextlib
import functools
import html
import math
import os
import re
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path

import gradio as gr
from PIL import Image

from diffsketch_core import budgets, settings
from diffsketch_core.errors import BadInputError
from diffsketch_core.images import check_pixels
from diffsketch_core.diffusion.backbone import TINY, Backbone, load_backbone
from diffsketch_core.perceptual import load_clip
from diffsketch_core.strokes import loaders as stroke_loaders
from diffsketch_core.strokes.svg import to_svg

try:  # on a ZeroGPU Space this requests a GPU for the call; elsewhere it returns the function unchanged
    from spaces import GPU
except ImportError:  # pragma: no cover - spaces is in requirements.txt
    def GPU(fn=None, **_kw):
        return fn if fn is not None else (lambda f: f)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
WORK = Path(tempfile.gettempdir()) / "diffsketch-studio"
EXTRACTOR_LABELS = {"fast": "Fast (HED student, under 0.5 s)",
                    "hed": "HED (soft, detailed)", "pidinet": "PiDiNet (clean contours)",
                    "xdog": "XDoG (tonal, DiffSketch's setting)", "canny": "Canny (thin, hard edges)"}
DEMO_BANNER = ("**Demo backbone** — tiny Stable-Diffusion-shaped model with *random weights*. Everything runs end "
               "to end, but the sketches mean nothing. Point the Backbone panel at real Stable Diffusion weights "
               "(1.x, 2.x or XL) for real results.")
NEEDS_WEIGHTS = (f"**Needs Stable Diffusion weights (1.x, 2.x or XL).** Open the *Backbone* panel above and enter a "
                 f"hub id or a local "
                 f"diffusers folder (or set `{settings.SD_MODEL_ENV}` before starting the app), then *Load*. "
                 "Tick *Demo backbone* to try the pipeline with random weights.")


def needs_style_weights() -> str:
    """What the Style and Photo -> Sketch tabs say with no backbone loaded: SD's needs, then the CPU backbone's
    (those two tabs also work on VGG16 features, which need their own weights)."""
    from diffsketch_core.diffusion import cnn

    missing = cnn.needs()
    return (f"{NEEDS_WEIGHTS}\n\n**Or, without Stable Diffusion (on a CPU):** choose *CPU: VGG16 features* in the "
            f"*Backbone* panel, then *Load*. {missing or 'Its weights are here.'}")

# Cancel flags of running trainings, one per browser session. gr.State hands each event its own copy, so a
# flag that the Stop event sets must live here, keyed by the session, to reach the running training.
RUNNING: dict[str, threading.Event] = {}


@functools.lru_cache(maxsize=2)
def backbone(source: str) -> Backbone:
    return load_backbone(source)


@functools.lru_cache(maxsize=2)
def clip(demo: bool):
    return load_clip("tiny" if demo else None)


def session(request: gr.Request | None) -> str:
    key = getattr(request, "session_hash", None) or "local"
    return key if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", key) else "other"  # a folder name, never a path


def user_dir(request: gr.Request | None) -> Path:
    """Files of one browser session that outlive a request (trained and uploaded styles): nothing here is visible
    to another user. Removed when the session ends, or by `sweep` once untouched for SESSION_TTL_S (a plain API
    call is a session that never ends)."""
    path = WORK / session(request)
    path.mkdir(parents=True, exist_ok=True)
    return path


def output_dir(request: gr.Request | None, kind: str) -> Path:
    """A fresh folder for one request's output files. Gradio copies what a function returns into its own cache
    when it sends the response, so `sweep` removes these after OUTPUT_TTL_S."""
    path = WORK / session(request) / f"{OUTPUT_PREFIX}{kind}-{time.time_ns()}"
    path.mkdir(parents=True)
    return path


OUTPUT_PREFIX = "out-"


def _newest_mtime(path: Path) -> float:
    newest = path.stat().st_mtime
    for p in path.rglob("*"):
        try:
            newest = max(newest, p.stat().st_mtime)
        except OSError:  # removed meanwhile
            pass
    return newest


def sweep(now: float | None = None, output_ttl: float | None = None, session_ttl: float | None = None) -> int:
    """Remove request outputs older than `output_ttl`, sessions untouched for `session_ttl` and emptied session
    folders; returns how many folders went. Sessions with a running training are kept."""
    now = time.time() if now is None else now
    output_ttl = budgets.OUTPUT_TTL_S if output_ttl is None else output_ttl
    session_ttl = budgets.SESSION_TTL_S if session_ttl is None else session_ttl
    removed = 0
    for sess in (WORK.iterdir() if WORK.is_dir() else []):
        if not sess.is_dir() or sess.name in RUNNING:
            continue
        try:
            for out in sess.glob(OUTPUT_PREFIX + "*"):  # folders, and files beside them (a folder's .zip)
                if now - out.stat().st_mtime > output_ttl:
                    shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
                    removed += 1
            if now - _newest_mtime(sess) > session_ttl:
                shutil.rmtree(sess, ignore_errors=True)
                removed += 1
            elif not any(sess.iterdir()) and now - sess.stat().st_mtime > output_ttl:
                sess.rmdir()  # fails harmlessly when a request has just written into it
                removed += 1
        except OSError:
            continue
    return removed


_SWEEPER: list[threading.Thread] = []


def start_sweeper(every: float | None = None) -> None:
    """Run `sweep` in the background every SWEEP_EVERY_S seconds (once per process)."""
    if _SWEEPER and _SWEEPER[0].is_alive():
        return

    def loop():
        while True:
            time.sleep(every or budgets.SWEEP_EVERY_S)
            try:
                sweep()
            except Exception:  # pragma: no cover - a sweep must never take the app down
                pass

    _SWEEPER[:] = [threading.Thread(target=loop, daemon=True, name="diffsketch-sweep")]
    _SWEEPER[0].start()


# Flags of the short jobs (Rectify, Draw strokes) running for each browser session, set when the session's page
# closes (demo.unload), so a job nobody waits for any more stops at its next step. Counted: one session may run
# several jobs at once, and the entry lives only while one of them does.
_CONNECTED: dict[str, tuple[threading.Event, int]] = {}
_CONNECTED_LOCK = threading.Lock()


@contextlib.contextmanager
def while_connected(request: gr.Request | None):
    """A flag, for the length of a job, that is set when this browser session goes away."""
    key = session(request)
    with _CONNECTED_LOCK:
        flag, users = _CONNECTED.get(key, (threading.Event(), 0))
        _CONNECTED[key] = (flag, users + 1)
    try:
        yield flag
    finally:
        with _CONNECTED_LOCK:
            flag, users = _CONNECTED[key]
            if users <= 1:
                del _CONNECTED[key]
            else:
                _CONNECTED[key] = (flag, users - 1)


def stop_job(key: str, nothing: str, stopping: str):
    """A Stop button: set the running job's cancel flag (RUNNING[key]); say so, or that nothing runs here."""
    cancel = RUNNING.get(key)
    if cancel is None:
        gr.Info(f"Nothing to stop: {nothing}")
        return gr.skip()
    cancel.set()
    return stopping


def cleanup(request: gr.Request) -> None:
    flag = RUNNING.pop(session(request), None)
    if flag is not None:
        flag.set()
    with _CONNECTED_LOCK:
        live = _CONNECTED.get(session(request))
    if live is not None:
        live[0].set()
    shutil.rmtree(WORK / session(request), ignore_errors=True)


def _private_roots() -> list[str]:
    roots = {str(WORK), gr.utils.get_upload_folder(), tempfile.gettempdir(), str(Path(tempfile.gettempdir()).resolve())}
    return sorted(roots, key=len, reverse=True)


def scrub(message: str) -> str:
    """The message without server paths of users' files (our temp folders, Gradio's upload cache)."""
    for root in _private_roots():
        message = re.sub(re.escape(root) + r"[^\s'\"),;:]*", "the uploaded file", message)
    return message


def toast(message: str) -> str:
    """A message for gr.Error / gr.Info: toasts render (sanitised) HTML, not Markdown, so the marks our
    messages share with the page's banners become tags, and a literal '<' stays text."""
    text = html.escape(message, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"(?<![\w*])\*(?!\s)(.+?)\*(?![\w*])", r"<i>\1</i>", text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return text.replace("\n\n", "<br><br>")


def fail(exc: Exception) -> gr.Error:
    return gr.Error(toast(scrub(str(exc))))


# ---------------------------------------------------------------- typed inputs (the UI's widgets, or any API client)

def _number(value, what: str) -> float:
    if isinstance(value, bool) or value is None or value == "":
        raise gr.Error(f"{what} must be a number.")
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise gr.Error(f"{what} must be a number.") from None
    if not math.isfinite(x):
        raise gr.Error(f"{what} must be a finite number.")
    return x


def as_float(value, what: str, lo: float, hi: float) -> float:
    x = _number(value, what)
    if not lo <= x <= hi:
        raise gr.Error(f"{what} must be between {lo:g} and {hi:g}.")
    return x


def as_int(value, what: str, lo: int, hi: int) -> int:
    x = _number(value, what) if not isinstance(value, int) or isinstance(value, bool) else value
    if x != int(x) or not lo <= x <= hi:
        raise gr.Error(f"{what} must be a whole number from {lo:,} to {hi:,}.")
    return int(x)


def as_seed(value) -> int:
    return as_int(value, "Seed", 0, budgets.MAX_SEED)


def as_choice(value, choices, what: str):
    if not isinstance(value, str) or value not in choices:
        raise gr.Error(f"{what} must be one of: {', '.join(map(str, choices))}.")
    return value


def _upload_roots() -> list[Path]:
    return [Path(gr.utils.get_upload_folder()).resolve(), WORK.resolve()]


def received(path, what: str = "The upload") -> str | None:
    """`path` if it is a file this app received (Gradio's upload cache) or wrote (our temp folders); a path named by
    a client is refused without saying whether it exists. None stays None."""
    if path in (None, ""):
        return None
    refused = gr.Error(f"{what} must be a file uploaded through the app.")
    if not isinstance(path, (str, os.PathLike)):
        raise refused
    try:
        real = Path(path).resolve()
    except (OSError, RuntimeError, ValueError):
        raise refused from None
    if not any(real.is_relative_to(root) for root in _upload_roots()) or not real.is_file():
        raise refused
    return str(real)


def received_files(files, what: str = "Each file") -> list[str]:
    """A multi-file upload (a list, one path or nothing) as received paths, each checked by `received`."""
    return [received(f, what) for f in (files if isinstance(files, list) else [files] if files else [])]


# ---------------------------------------------------------------- Gradio's own pre-processing, as sentences

def _image_header_check(payload, label: str) -> None:
    """Before Gradio opens an uploaded image: an empty file, a non-image or one over the pixel budget gets a sentence
    (Gradio's own errors reach the browser as "Error" with no text)."""
    path = getattr(payload, "path", None)
    if not path or getattr(payload, "url", "") and str(payload.url).startswith("data:"):
        return
    received(path, label)  # Gradio has checked this already; never open a file it did not receive
    if str(path).lower().endswith(".svg"):
        raise gr.Error(f"{label}: SVG files are not supported; upload a PNG, JPEG or WebP image.")
    try:
        if os.path.getsize(path) == 0:
            raise gr.Error(f"{label}: the file is empty (0 bytes); upload a PNG, JPEG or WebP image.")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:  # the header only
                size = im.size
    except gr.Error:
        raise
    except Image.DecompressionBombError:
        raise gr.Error(f"{label}: the image has more than the {budgets.MAX_PIXELS / 1e6:.0f} MP this app decodes; "
                       "downscale it first.") from None
    except Exception:
        raise gr.Error(f"{label}: the file is not an image this app can read; upload a PNG, JPEG or WebP image.") from None
    try:
        check_pixels(*size)
    except BadInputError as exc:
        raise gr.Error(f"{label}: {exc}") from None


def _guard(block) -> None:
    original = block.preprocess
    label = block.label or type(block).__name__
    is_image = isinstance(block, gr.Image)
    is_number = isinstance(block, (gr.Number, gr.Slider))
    is_slider = isinstance(block, gr.Slider)  # a Number may be empty (None); a Slider never is

    def preprocess(payload):
        if is_image:
            _image_header_check(payload, label)
        if is_number and (payload is not None or is_slider) and (
                isinstance(payload, bool) or not isinstance(payload, (int, float)) or not math.isfinite(payload)):
            raise gr.Error(f"{label} must be a finite number.")
        try:
            return original(payload)
        except gr.Error:
            raise
        except Exception:
            raise gr.Error(f"{label}: the value sent cannot be used here.") from None

    block.preprocess = preprocess


def harden(blocks: gr.Blocks) -> gr.Blocks:
    """Every input component's pre-processing, and the step before it (files named by path, malformed payloads),
    raises gr.Error with a sentence instead of an exception the browser shows as a bare "Error"."""
    for block in blocks.blocks.values():
        if isinstance(block, gr.components.Component) and not getattr(block, "_hardened", False):
            _guard(block)
            block._hardened = True
    original = blocks.preprocess_data

    async def preprocess_data(*args, **kwargs):
        try:
            return await original(*args, **kwargs)
        except gr.Error:
            raise
        except Exception:
            raise gr.Error("An input could not be used: files must be uploaded through the app (never named by a "
                           "path), and each value must be of its field's kind.") from None

    blocks.preprocess_data = preprocess_data
    return blocks


def banner(source: str | None) -> str:
    if source is None:
        return NEEDS_WEIGHTS
    return DEMO_BANNER if source == TINY else f"Backbone: `{source}`"


# ---------------------------------------------------------------- strokes (Draw strokes and Rectify)

STROKES_READY = (stroke_loaders.DEFAULT_MODEL / "config.json").is_file()
SKIP_READY = (stroke_loaders.DEFAULT_RECOGNIZABILITY / "config.json").is_file()


def stroke_classifier():
    """The shipped sketch classifier (the one Draw strokes guides with: one copy in memory), or None."""
    path = stroke_loaders.DEFAULT_CLASSIFIER
    return stroke_loaders.load_sketch_classifier() if (path / "config.json").is_file() else None


def stroke_classes() -> list[str]:
    return list(stroke_loaders.load_stroke_model().config.class_names) if STROKES_READY else []


def svg_grid(sketches) -> str:
    cells = "".join(f'<div style="width:200px">{to_svg(s, 200, 2.5, animated=True)}</div>' for s in sketches)
    return f'<div style="display:flex;flex-wrap:wrap;gap:8px">{cells}</div>'
