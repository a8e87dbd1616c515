"""The shared tail of every `python -m diffsketch_core...` entry point.

Each command builds its own argparse parser (`parser()` adds the common --threads flag) and hands it with its
body to `run`, which parses, sets the thread count, and turns a `DiffSketchError` into one `error: ...` line on
stderr and exit status 2 (argparse's own usage errors exit 2 with an `error:` line too). Progress goes to stdout
as `[done/total] what (N s)` lines, notes to stderr as `note: ...`.

    def main(argv=None) -> int:
        return cli.run(_parser(), _main, argv)
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from .errors import DiffSketchError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def parser(prog: str, doc: str | None, threads: bool = True) -> argparse.ArgumentParser:
    """A parser named like the command a user types (`python -m diffsketch_core.x`), with the module docstring
    as its description and, unless `threads` is False, a --threads flag."""
    p = argparse.ArgumentParser(prog=f"python -m {prog}", description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    if threads:
        p.add_argument("--threads", type=at_least(1), default=None,
                       help="torch CPU threads (default: torch's choice, usually all cores)")
    return p


# argparse types for numbers with a range: `type=at_least(1)`; a value out of range is argparse's usage error
# (exit 2, `error: argument --batch: must be at least 1, got 0`), said before anything loads or trains
def at_least(low: int) -> Callable[[str], int]:
    def whole(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    whole.__name__ = "int"  # argparse's message for a non-number: "invalid int value"
    return whole


def positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value}")
    return value


def non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {value}")
    return value


positive.__name__ = non_negative.__name__ = fraction.__name__ = "float"


def run(p: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int | None],
        argv: list[str] | None = None) -> int:
    """Parse `argv`, run `body(args)` and return the exit status (0 unless body returns another)."""
    try:
        args = p.parse_args(argv)
        threads = getattr(args, "threads", None)
        if threads:
            import torch

            torch.set_num_threads(threads)
        return int(body(args) or 0)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    except DiffSketchError as exc:
        error(str(exc))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        error("interrupted")
        return EXIT_INTERRUPTED


def error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr, flush=True)


def progress(done: int, total: int, what: str = "", seconds: float | None = None) -> None:
    took = f" ({seconds:.0f} s)" if seconds is not None else ""
    print(f"[{done}/{total}] {what}{took}".rstrip(), flush=True)
