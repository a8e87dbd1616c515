"""A captioner: an image-captioning model that says what a photo shows, to fill the caption of a style's training
photo (and, on request, of each photo in Photo -> Sketch) when the user does not type one (issue 16 part 2).

The caption is the text condition of the example's features and the start of CDST's condition schedule, so a
caption that names the content keeps the extraction (and the first training samples) close to the photo.

Loaded by hub id or local folder through transformers (`AutoProcessor` + `AutoModelForImageTextToText`: BLIP,
e.g. Salesforce/blip-image-captioning-base, GIT and the like), only when the user names one: $DIFFSKETCH_CAPTIONER,
`--captioner`, or the app's captioner field. Nothing is downloaded otherwise, and with HF_HUB_OFFLINE=1 a model
missing from the local cache fails at once with a message naming the setting.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch
from PIL import Image

from .. import settings
from ..errors import MissingWeightsError

CAPTIONER_ENV = "DIFFSKETCH_CAPTIONER"
EXAMPLE_CAPTIONER = "Salesforce/blip-image-captioning-base"
MAX_NEW_TOKENS = 30  # a caption, not a paragraph: CLIP's tokenizer keeps 77 tokens anyway
MAX_CHARS = 300


def captioner_model(named: str | None = None) -> str | None:
    """The captioner the user named (`named`, e.g. --captioner), else $DIFFSKETCH_CAPTIONER, else None: no
    captioner unless the user names one."""
    return (named or "").strip() or os.environ.get(CAPTIONER_ENV, "").strip() or None


def _missing(source: str, why: str) -> MissingWeightsError:
    return MissingWeightsError(
        f"Captioner '{source}' is not available: {why}. Download an image-captioning model (e.g. "
        f"{EXAMPLE_CAPTIONER}) on a machine with internet and point {CAPTIONER_ENV} (or --captioner, or the "
        "captioner field of the Style tab's advanced panel) at its local folder, or type the caption yourself.")


class Captioner:
    def __init__(self, model: torch.nn.Module, processor, source: str, device: torch.device | None = None):
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.processor, self.source = processor, source

    @torch.no_grad()
    def caption(self, image: Image.Image) -> str:
        """What the photo shows, one line (greedy decoding, so the same photo always gives the same caption).
        May be empty when the model says nothing readable; callers fall back to their own default."""
        inputs = self.processor(images=image.convert("RGB"), return_tensors="pt").to(self.device)
        ids = self.model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, num_beams=1)
        text = self.processor.batch_decode(ids, skip_special_tokens=True)[0]
        return " ".join(text.split())[:MAX_CHARS]


def load_captioner(source: str, device: torch.device | str | None = None) -> Captioner:
    """A captioner from a hub id or a local transformers folder (config.json + weights + processor files)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    source = source.strip()
    local = Path(source).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise _missing(source, "the folder has no config.json (is it a transformers image-captioning model?)")
        where, kw = str(local), {}
    elif settings.is_hub_id(source):
        where, kw = source, {"local_files_only": settings.hub_offline()}
    else:
        raise _missing(source, "it is neither a local folder nor a hub id like 'owner/name'")
    try:
        processor = AutoProcessor.from_pretrained(where, **kw)
        model = AutoModelForImageTextToText.from_pretrained(where, **kw)
    except Exception as exc:  # hub/network/filesystem/config errors come in many types; all mean "not usable here"
        raise _missing(source, settings.load_failure(exc, from_hub=bool(kw))) from exc
    return Captioner(model, processor, source, torch.device(device) if device is not None else None)


@lru_cache(maxsize=2)
def shared_captioner(source: str, device: str | None = None) -> Captioner:
    """One loaded copy per source (and device) for the app (read-only, like the backbone)."""
    return load_captioner(source, device)
