"""Run a long job (anything shaped `run(on_event, cancel)`) in a worker thread and consume its events as an
iterator. Closing the iterator early (a UI's Stop, a closed browser tab) sets the cancel flag and waits for the
job to finish its current step, so no work is left running in the background."""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator

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
