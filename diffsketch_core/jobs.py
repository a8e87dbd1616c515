"""Run a long job (anything shaped `run(on_event, cancel)`) in a worker thread and consume its events as an
iterator. Closing the iterator early (a UI's Stop, a closed browser tab) sets the cancel flag and waits for the
job to finish its current step, so no work is left running in the background."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Iterator

from .errors import JobStopped

_DONE = object()


def iterate_events(run: Callable[[Callable[[Any], None], threading.Event], Any],
                   cancel: threading.Event | None = None, join_timeout: float | None = 600) -> Iterator[Any]:
    """Yields each event the job emits; the job's return value is sent as the final item wrapped in
    `JobResult`. Exceptions raised by the job are re-raised here."""
    cancel = cancel or threading.Event()
    events: queue.Queue = queue.Queue()
    outcome: dict = {}

    def worker() -> None:
        try:
            outcome["value"] = run(events.put, cancel)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            outcome["error"] = exc
        finally:
            events.put(_DONE)

    thread = threading.Thread(target=worker, daemon=True, name="diffsketch-job")
    thread.start()
    try:
        while True:
            item = events.get()
            if item is _DONE:
                break
            yield item
        if "error" in outcome:
            raise outcome["error"]
        yield JobResult(outcome.get("value"))
    finally:
        if thread.is_alive():
            cancel.set()
            thread.join(join_timeout)


class JobResult:
    def __init__(self, value: Any):
        self.value = value


class Deadline:
    """A cancel flag that trips by itself once `seconds` have passed (a request's time budget), or when `also`
    (another flag: a Stop button, a closed session) is set. Loops that take a cancel flag stop at their next step."""

    def __init__(self, seconds: float, what: str, also: threading.Event | None = None):
        self.seconds, self.what, self.also = float(seconds), what, also
        self.end = time.monotonic() + self.seconds

    def is_set(self) -> bool:
        return time.monotonic() > self.end or (self.also is not None and self.also.is_set())

    @property
    def reason(self) -> str:
        if self.also is not None and self.also.is_set():
            return f"{self.what} was stopped."
        return (f"{self.what} stopped at its time budget of {self.seconds:g} s (the machine is busy or the input is "
                "large); try again, with fewer sketches or a simpler drawing.")


def check(cancel) -> None:
    """Raise JobStopped when `cancel` (anything with is_set(), or None) is set; its `reason`, if any, is the message."""
    if cancel is not None and cancel.is_set():
        raise JobStopped(getattr(cancel, "reason", "The job was stopped."))
