"""More teacher pairs from the same photos: for each photo a zoom crop and a quarter turn, both square and
mildly jittered in brightness, contrast and colour. A student distilled on few photos learns the teacher's
habits on those photos; new views of them are new inputs for the teacher, so new pairs (the student's tenth
run measured three times the gain per hour from new pairs as from more steps on old ones).

Each photo's views are drawn from a generator seeded by its file name, so the same folder always gives the same
views, whichever machine or process makes them. The views are written as PNGs into their own folder; a
distillation then caches them beside the photos' own pairs (the cache stage with `--photos` on that folder),
and training uses every pair in the cache:

    python -m diffsketch_core.style.views photos/ views/ --side 512
    python -m diffsketch_core.style.views photos/ views/ --side 512 --draw 1   # a second zoom and turn each
    python -m diffsketch_core.style.distill --photos views/ --teacher hed --cache cache/
    python -m diffsketch_core.style.distill --photos photos/ --teacher hed --cache cache/ --run-dir runs/s ...
"""

from __future__ import annotations

import argparse
import hashlib
import random
from pathlib import Path

from PIL import Image, ImageEnhance

from .. import cli
from ..errors import BadInputError
from ..images import load_image
from .distill import PhotoFolder, scan_photos


def photo_rng(name: str, draw: int = 0) -> random.Random:
    # draw 0 is seeded by the bare name, so the views of the first runs stay reproducible byte for byte
    key = name if draw == 0 else f"{name}#{draw}"
    return random.Random(int(hashlib.sha256(key.encode()).hexdigest()[:8], 16))


def jittered(img: Image.Image, rng: random.Random) -> Image.Image:
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.75, 1.25))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.75, 1.25))
    return ImageEnhance.Color(img).enhance(rng.uniform(0.6, 1.4))


def views(img: Image.Image, name: str, side: int = 512, draw: int = 0) -> dict[str, Image.Image]:
    """{"zoom": a crop of 55-80% of each side, "turn": the photo turned a quarter either way}, each stretched to
    side x side and jittered; drawn in that order from photo_rng(name, draw)."""
    rng, (w, h) = photo_rng(name, draw), img.size
    f = rng.uniform(0.55, 0.8)
    cw, ch = max(1, round(w * f)), max(1, round(h * f))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    zoom = jittered(img.crop((x, y, x + cw, y + ch)).resize((side, side), Image.Resampling.LANCZOS), rng)
    turn = img.transpose(rng.choice([Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270]))
    turn = jittered(turn.resize((side, side), Image.Resampling.LANCZOS), rng)
    return {"zoom": zoom, "turn": turn}


def write_views(photos: str | Path, out: str | Path, side: int = 512, draw: int = 0) -> tuple[int, PhotoFolder]:
    """Views of every usable photo under `photos` into `out` (same subfolders, `<stem>-zoom.png` and
    `<stem>-turn.png`, with the draw after the kind from draw 1 on: `<stem>-zoom1.png`); returns (views
    written, the folder's photos and skipped files)."""
    root, out = Path(photos), Path(out)
    found = scan_photos(root)
    written = 0
    for path in found.photos:
        dest = out / path.parent.relative_to(root)
        dest.mkdir(parents=True, exist_ok=True)
        for kind, img in views(load_image(path).image, path.name, side, draw).items():
            img.save(dest / f"{path.stem}-{kind}{draw or ''}.png")
            written += 1
    return written, found


def _main(args: argparse.Namespace) -> int:
    root, out = Path(args.photos).resolve(), Path(args.out).resolve()
    if out == root or root in out.parents:
        raise BadInputError("The views folder must be outside the photo folder (or the next run makes views of views).")
    written, found = write_views(args.photos, args.out, args.side, args.draw)
    if found.skipped:
        cli.note(found.skipped_note())
    print(f"wrote {written} views into {args.out}", flush=True)
    return 0


def _parser() -> argparse.ArgumentParser:
    p = cli.parser("diffsketch_core.style.views", __doc__, threads=False)
    p.add_argument("photos", help="folder of photos (searched recursively)")
    p.add_argument("out", help="folder for the views (created)")
    p.add_argument("--side", type=cli.at_least(16), default=512, help="each view is side x side pixels")
    p.add_argument("--draw", type=cli.at_least(0), default=0,
                   help="which draw of views: each gives every photo a new zoom and turn (0 is the first)")
    return p


def main(argv: list[str] | None = None) -> int:
    return cli.run(_parser(), _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
