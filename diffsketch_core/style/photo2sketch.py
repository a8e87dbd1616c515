"""Sketch any photo in a trained style.

The photo goes through the same noise-and-extract path the style was trained on, at the style's square
resolution (stretched, as in training), and the sketch comes back at the photo's own size.

CLI: python -m diffsketch_core.style.photo2sketch --style styles/mine photos/ out/   (a folder or single files)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from PIL import Image

from .. import cli
from ..diffusion.backbone import Backbone, load_backbone
from ..errors import BadInputError, DiffSketchError
from ..diffusion.features import image_to_tensor
from ..diffusion.prompts import PromptOptions, Prompts
from ..images import ImageLike, load_image
from .store import Style, attach, load_style
from .extraction import StyleExtraction, bucket_specs
from .training import DEFAULT_CAPTION, example_seed

if TYPE_CHECKING:
    from ..diffusion.captioner import Captioner

PHOTO_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


@dataclass
class SketchResult:
    sketch: Image.Image  # mode "L", 255 = paper, the photo's size
    notes: list[str] = field(default_factory=list)  # everything said of this photo (its loading, its caption)
    caption_notes: list[str] = field(default_factory=list)  # the captioner's part of `notes`


class PhotoToSketch:
    """DESIGN (train/inference parity): every photo is extracted exactly as the style's example was, with the
    style's taps and timesteps, its training seed's example noise and, unless `caption` is given, the style's own
    caption, so the style applied to its own training photo reproduces the trainer's reconstruction bit for bit.

    Why the example's caption on other photos: the generator learned the example with that condition and the CDST
    samples with conditions that start at it and drift through the caption prior; it never saw the unconditional
    embedding as the cond half (an empty caption), so "" is no better a match for an unrelated photo than the
    style's caption, and worse for photos like the example. A per-photo caption (`caption=`, the CLI's --caption,
    the app's caption box) is the matched condition when the user knows what the photos show; a `captioner`
    (diffusion/captioner.py) writes one per photo. The style's prompt options (fine-grained prompt, what the
    unconditional half is extracted with; diffusion/prompts.py) are applied to whichever caption is used."""

    def __init__(self, style: Style, backbone: Backbone, caption: str | None = None, seed: int | None = None,
                 max_batch: int = 26, captioner: Captioner | None = None):
        self.style, self.bb = style, backbone
        train_seed = int(style.meta.get("seed", 50)) if seed is None else seed
        self.seed = example_seed(train_seed)
        taps = style.generator.config.unet_taps or None
        buckets = style.meta.get("buckets") or bucket_specs(style.meta.get("control"), style.meta.get("lora"))
        self.extraction = StyleExtraction(backbone, taps, style.timesteps, buckets, max_batch)
        self.extractor = self.extraction.main
        self.train_seed = train_seed
        self.caption = caption.strip() if caption and caption.strip() else (style.caption or DEFAULT_CAPTION)
        self.captioner = captioner
        try:
            self.prompts = Prompts(backbone, PromptOptions.from_meta(style.meta.get("prompts")))
        except ValueError as exc:  # a style.json edited by hand
            raise BadInputError(f"This style's prompt options are not valid: {exc}") from None
        self.cond = self.prompts.cond(self.caption)
        self.uncond = self.prompts.uncond(self.cond)

    def _condition(self, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """The two halves' embeddings for one photo: its own caption when a captioner is set (an empty one falls
        back to the fixed caption), else the fixed caption's, encoded once."""
        if self.captioner is None:
            return self.cond, self.uncond, []
        text = self.captioner.caption(image)
        if not text:
            return self.cond, self.uncond, [f"The captioner said nothing; '{self.caption}' was used."]
        cond = self.prompts.cond(text)
        return cond, self.prompts.uncond(cond), [f"Caption: '{text}'"]

    @torch.no_grad()
    def __call__(self, photo: ImageLike) -> SketchResult:
        loaded = load_image(photo)
        w, h = loaded.image.size
        res = self.style.resolution
        x = image_to_tensor(loaded.image, (res, res)).to(self.bb.device)
        cond, uncond, said = self._condition(loaded.image)
        feats = self.extraction.photo(x, loaded.image, cond, uncond, self.train_seed)
        out = self.style.generator(feats)[0, 0].float().clamp(0, 1).cpu().numpy()
        img = Image.fromarray((out * 255).round().astype(np.uint8), "L")
        if img.size != (w, h):
            img = img.resize((w, h), Image.Resampling.BICUBIC)
        return SketchResult(img, loaded.notes + said, said)


def finish(sketch: Image.Image, line_weight: int = 0, threshold: float | None = None,
           transparent: bool = False) -> Image.Image:
    """Output controls: thicken (line_weight > 0) or thin (< 0) lines by that many pixels, binarise at
    `threshold` (0-1 of paper brightness; None keeps grey levels), and optionally make the paper transparent
    (RGBA, black ink whose alpha is the ink strength)."""
    from PIL import ImageFilter

    img = sketch.convert("L")
    if line_weight:
        size = 2 * abs(int(line_weight)) + 1
        img = img.filter(ImageFilter.MinFilter(size) if line_weight > 0 else ImageFilter.MaxFilter(size))
    if threshold is not None:
        cut = int(round(255 * threshold))
        img = img.point(lambda v: 0 if v < cut else 255)
    if not transparent:
        return img
    ink = Image.eval(img, lambda v: 255 - v)
    rgba = Image.new("RGBA", img.size, (0, 0, 0, 0))
    rgba.putalpha(ink)
    return rgba


def list_photos(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(q for q in p.iterdir() if q.suffix.lower() in PHOTO_SUFFIXES)
        else:
            found.append(p)
    if not found:
        raise BadInputError(f"No photos found in {', '.join(paths)}.")
    return found


def split_inputs(inputs: list[str]) -> tuple[list[str], str]:
    """A photo CLI's positional arguments: photos or folders of photos, then the output folder."""
    if len(inputs) < 2:
        raise BadInputError("give at least one photo (or folder) and an output folder")
    *sources, out_dir = inputs
    return sources, out_dir


def sketch_folder(model: Callable[[Path], SketchResult], sources: list[str], out_dir: str) -> int:
    """Sketch every photo of `sources` into out_dir/<name>.png, printing each path; returns the CLI's exit status
    (2 when some photo failed: one bad photo does not stop the folder)."""
    photos = list_photos(sources)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for photo in photos:
        try:
            result = model(photo)
        except DiffSketchError as exc:  # one bad photo does not stop the folder
            cli.error(f"{photo}: {exc}")
            failures += 1
            continue
        target = out / f"{photo.stem}.png"
        result.sketch.save(target)
        print(target)
    return cli.EXIT_BAD_INPUT if failures else 0


def _parser() -> argparse.ArgumentParser:
    p = cli.parser("diffsketch_core.style.photo2sketch", __doc__)
    p.add_argument("--style", required=True, help="style folder from diffsketch_core.style.training")
    p.add_argument("--backbone", default=None, help="hub id, local dir or 'tiny' (default $DIFFSKETCH_SD_MODEL)")
    p.add_argument("--caption", default=None, help="what these photos show (default: the style's own caption)")
    p.add_argument("--seed", type=int, default=None, help="extraction seed (default: the style's training seed)")
    p.add_argument("--caption-each", action="store_true",
                   help="caption every photo with the captioner (--captioner or $DIFFSKETCH_CAPTIONER) instead of "
                        "using one caption for all")
    p.add_argument("--captioner", default=None, help="image-captioning model, hub id or folder (with --caption-each)")
    p.add_argument("inputs", nargs="+", help="photos or folders of photos, then the output folder")
    return p


def _main(args: argparse.Namespace) -> int:
    from ..diffusion.captioner import captioner_model, load_captioner

    sources, out_dir = split_inputs(args.inputs)
    source = captioner_model(args.captioner) if args.caption_each else None
    if args.caption_each and not source:  # the user's mistakes first, then what takes a while to load
        raise BadInputError("--caption-each needs a captioner: --captioner or $DIFFSKETCH_CAPTIONER.")
    style = load_style(args.style)
    captioner = load_captioner(source) if source else None
    bb = load_backbone(args.backbone)
    model = PhotoToSketch(attach(style, bb), bb, args.caption, args.seed, captioner=captioner)
    return sketch_folder(model, sources, out_dir)


def main(argv: list[str] | None = None) -> int:
    return cli.run(_parser(), _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
