"""What the tabs share: per-session folders and cancel flags, the error mapping, banners, cached models."""

from __future__ import annotations

import functools
import shutil
import tempfile
import threading
from pathlib import Path

import gradio as gr

from diffsketch_core import settings
from diffsketch_core.diffusion.backbone import TINY, Backbone, load_backbone
from diffsketch_core.perceptual import load_clip
from diffsketch_core.strokes import loaders as stroke_loaders
from diffsketch_core.strokes.classifier import load_classifier
from diffsketch_core.strokes.svg import to_svg

try:  # on a ZeroGPU Space this requests a GPU for the call; elsewhere it returns the function unchanged
    from spaces import GPU
except ImportError:  # pragma: no cover - spaces is in requirements.txt
    def GPU(fn=None, **_kw):
        return fn if fn is not None else (lambda f: f)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
WORK = Path(tempfile.gettempdir()) / "diffsketch-studio"
EXTRACTOR_LABELS = {"hed": "HED (soft, detailed)", "pidinet": "PiDiNet (clean contours)",
                    "xdog": "XDoG (tonal, DiffSketch's setting)", "canny": "Canny (thin, hard edges)"}
DEMO_BANNER = ("**Demo backbone** — tiny Stable-Diffusion-shaped model with *random weights*. Everything runs end "
               "to end, but the sketches mean nothing. Point the Backbone panel at real SD 1.x weights for real results.")
NEEDS_WEIGHTS = (f"**Needs Stable Diffusion 1.x weights.** Open the *Backbone* panel above and enter a hub id or a local "
                 f"diffusers folder (or set `{settings.SD_MODEL_ENV}` before starting the app), then *Load*. "
                 "Tick *Demo backbone* to try the pipeline with random weights.")

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
    return getattr(request, "session_hash", None) or "local"


def user_dir(request: gr.Request | None) -> Path:
    """Files of one browser session: nothing here is visible to another user."""
    path = WORK / session(request)
    path.mkdir(parents=True, exist_ok=True)
    return path


def cleanup(request: gr.Request) -> None:
    flag = RUNNING.pop(session(request), None)
    if flag is not None:
        flag.set()
    shutil.rmtree(WORK / session(request), ignore_errors=True)


def fail(exc: Exception) -> gr.Error:
    return gr.Error(str(exc))


def banner(source: str | None) -> str:
    if source is None:
        return NEEDS_WEIGHTS
    return DEMO_BANNER if source == TINY else f"Backbone: `{source}`"


# ---------------------------------------------------------------- strokes (Draw strokes and Rectify)

STROKES_READY = (stroke_loaders.DEFAULT_MODEL / "config.json").is_file()
SKIP_READY = (stroke_loaders.DEFAULT_RECOGNIZABILITY / "config.json").is_file()


@functools.lru_cache(maxsize=1)
def stroke_classifier():
    path = stroke_loaders.DEFAULT_CLASSIFIER
    return load_classifier(path) if (path / "config.json").is_file() else None


def stroke_classes() -> list[str]:
    return list(stroke_loaders.load_stroke_model().config.class_names) if STROKES_READY else []


def svg_grid(sketches) -> str:
    cells = "".join(f'<div style="width:200px">{to_svg(s, 200, 2.5, animated=True)}</div>' for s in sketches)
    return f'<div style="display:flex;flex-wrap:wrap;gap:8px">{cells}</div>'
