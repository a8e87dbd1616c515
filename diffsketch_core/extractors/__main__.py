"""python -m diffsketch_core.extractors --method hed in.jpg out.png"""

from __future__ import annotations

import argparse
import sys

from ..errors import DiffSketchError
from . import DEFAULT_RESOLUTION, METHODS, extract_sketch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffsketch_core.extractors", description=__doc__)
    p.add_argument("--method", default="hed", help=f"one of {', '.join(METHODS)} (default hed)")
    p.add_argument("--resolution", type=int, default=DEFAULT_RESOLUTION,
                   help="process images larger than this (long side) at this size; 0 = native")
    p.add_argument("input")
    p.add_argument("output", help="output image; PNG recommended")
    args = p.parse_args(argv)
    try:
        sketch = extract_sketch(args.input, args.method, resolution=args.resolution or None)
        sketch.image.save(args.output)
    except DiffSketchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: could not write {args.output}: {exc}", file=sys.stderr)
        return 2
    for note in sketch.notes:
        print(f"note: {note}", file=sys.stderr)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
