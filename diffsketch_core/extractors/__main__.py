"""python -m diffsketch_core.extractors --method hed in.jpg out.png"""

from __future__ import annotations

import argparse

from .. import cli
from ..errors import BadInputError
from . import DEFAULT_RESOLUTION, METHODS, extract_sketch


def _parser() -> argparse.ArgumentParser:
    p = cli.parser("diffsketch_core.extractors", __doc__)
    p.add_argument("--method", default="hed", choices=METHODS, help="default hed")
    p.add_argument("--resolution", type=int, default=DEFAULT_RESOLUTION,
                   help="process images larger than this (long side) at this size; 0 = native")
    p.add_argument("input")
    p.add_argument("output", help="output image; PNG recommended")
    return p


def _main(args: argparse.Namespace) -> int:
    sketch = extract_sketch(args.input, args.method, resolution=args.resolution or None)
    try:
        sketch.image.save(args.output)
    except (OSError, ValueError) as exc:  # unknown extension, unwritable folder
        raise BadInputError(f"could not write {args.output}: {exc}") from None
    for note in sketch.notes:
        cli.note(note)
    print(args.output)
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(_parser(), _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
