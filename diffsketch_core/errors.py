"""Errors meant for users: each message says what went wrong and what to do about it.

Everything raised at a boundary (CLI, app) that is the user's input or setup, not a bug, is a
`DiffSketchError`; the CLI prints its message and exits with status 2, the app shows it as a gr.Error.
"""

from __future__ import annotations

from typing import Iterable


class DiffSketchError(Exception):
    """A problem with the user's input or setup, with a message fit to show them."""


class BadInputError(DiffSketchError, ValueError):
    """An input (image, sketch, file, argument) that cannot be used as given."""


class JobStopped(DiffSketchError):
    """A job stopped before it finished: Stop was pressed, the client left, or it ran past its time budget."""


class MissingWeightsError(DiffSketchError, FileNotFoundError):
    """Pretrained weights that are neither in a local directory nor obtainable from the hub."""


def check_settings(what: str, checks: Iterable[tuple[bool, str]]) -> None:
    """Raise BadInputError("<what>: <said>.") for the first (ok, said) that is not ok: a training configuration
    checks itself when it is made, so a bad value is one sentence before anything runs, not a traceback (or a
    silent no-op) minutes later."""
    for ok, said in checks:
        if not ok:
            raise BadInputError(f"{what}: {said}.")
