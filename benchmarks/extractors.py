"""Seconds per 512x512 photo for each classic extractor on this machine.

    DIFFSKETCH_WEIGHTS_DIR=../shared/weights python benchmarks/extractors.py [--photo P] [--repeats 3]

The first call of each extractor (weight loading, imports) is reported separately from the median of the
repeats that follow.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._util import machine  # noqa: E402
from diffsketch_core.extractors import METHODS, extract_sketch  # noqa: E402
from diffsketch_core.images import load_image  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photo", default=str(ROOT / "assets" / "photos" / "astronaut.png"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    args = p.parse_args()
    photo = load_image(args.photo).image.resize((512, 512))
    print(f"machine: {machine()}; photo {Path(args.photo).name} resized to 512x512")
    print(f"{'method':<10}{'first call s':>14}{'median s':>10}{'min s':>8}")
    for method in args.methods:
        t0 = time.perf_counter()
        extract_sketch(photo, method, resolution=512)
        first = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            extract_sketch(photo, method, resolution=512)
            times.append(time.perf_counter() - t0)
        print(f"{method:<10}{first:>14.3f}{statistics.median(times):>10.3f}{min(times):>8.3f}")


if __name__ == "__main__":
    main()
