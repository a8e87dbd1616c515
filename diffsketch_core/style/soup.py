"""A model soup of one-shot styles: `runs` fine-tunes of the same start (for CPU styles, the sketch prior), trained
one after another with seeds seed, seed + 1, ... and averaged weight by weight (Wortsman et al. 2022, "Model
soups"). The trainers come from a factory (style/cnn_training.py's `cnn_trainer` makes them), so this module
knows only what every trainer has: run(), iteration, generator, style().

Why: one example leaves a new photo's faint edges to chance, and the seed (which crops and flips the style saw,
in which order) moves its LPIPS by up to 0.01. Fine-tunes of one start stay in one basin, so their weight
average is a working network (one pass to apply, unlike an ensemble) that keeps what the runs agree on. Measured
on the one-shot benchmark (README; example 1, 50 BSDS500 test photos, 20 extra photos, mirror-averaged, mean over
the XDoG / HED / PiDiNet styles): three soups of three runs (seeds 50-52, 53-55, 56-58) 0.189 / 0.189 / 0.187,
against 0.194 / 0.184 / 0.194 for single runs (seeds 50 / 51 / 52); over the benchmark's 9 styles 0.215 -> 0.208.
It costs `runs` times the training (a 3-run soup with 20 extra photos: 274 s against 90 s on 2 threads of this
CPU); the applied style costs what one run's does.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Callable, Optional, Protocol

import torch

from ..errors import BadInputError
from .store import Style
from .training import CancelFlag, TrainEvent

MAX_RUNS = 5


class Trainer(Protocol):
    iteration: int
    generator: torch.nn.Module

    def run(self, on_event: Optional[Callable[[TrainEvent], None]] = None,
            cancel: CancelFlag | None = None) -> Style: ...

    def style(self) -> Style: ...


# make(seed, start): a trainer with that seed, starting from a copy of `start` (None: the first run, its own start)
MakeTrainer = Callable[[int, Optional[torch.nn.Module]], Trainer]


class SoupTrainer:
    """Trains the runs one at a time (one run's training state in memory) and keeps each finished run's weights. Stopped
    during a later run, the style is the soup of the runs already finished; stopped during the first, that run as
    it stands."""

    def __init__(self, make: MakeTrainer, runs: int, iterations: int, seed: int):
        if not 1 <= runs <= MAX_RUNS:
            raise BadInputError(f"Runs averaged must be between 1 and {MAX_RUNS}, not {runs}.")
        self.make, self.runs, self.iterations, self.seed = make, runs, iterations, seed
        self.finished: list[dict[str, torch.Tensor]] = []
        self.before = 0  # runs ahead of the current one
        self.current = make(seed, None)
        # every run starts from the first run's start (the prior, a given generator, or the first seed's random
        # weights): runs from different random starts would not average into a working network
        self._start = copy.deepcopy(self.current.generator)
        self._first_meta = self.current.style().meta  # what the first run says of its start holds for every run

    def __getattr__(self, name: str):
        # anything else (notes, prior, unlabeled, example_loss, ...) is the current run's
        if name.startswith("_") or name == "current":  # not set yet, or copy/pickle probing: not the run's
            raise AttributeError(name)
        return getattr(self.current, name)

    @property
    def iteration(self) -> int:
        return self.before * self.iterations + self.current.iteration

    @property
    def generator(self) -> torch.nn.Module:
        return self.current.generator

    def run(self, on_event: Optional[Callable[[TrainEvent], None]] = None, cancel: CancelFlag | None = None) -> Style:
        emit = on_event or (lambda e: None)
        total, start = self.iterations * self.runs, time.perf_counter()
        emit(TrainEvent("start", self.iteration, total, notes=list(getattr(self.current, "notes", []))))
        while True:
            offset = self.before * self.iterations

            def relay(ev: TrainEvent) -> None:
                if ev.kind in ("step", "preview"):
                    emit(dataclasses.replace(ev, iteration=ev.iteration + offset, total=total,
                                             seconds=time.perf_counter() - start))

            self.current.run(relay, cancel)
            if self.current.iteration < self.iterations:
                emit(TrainEvent("cancelled", self.iteration, total, seconds=time.perf_counter() - start))
                return self.style()
            self.finished.append({k: v.detach().clone() for k, v in self.current.generator.state_dict().items()})
            if len(self.finished) == self.runs:
                break
            self.current = self.make(self.seed + len(self.finished), copy.deepcopy(self._start))
            self.before += 1
        emit(TrainEvent("done", self.iteration, total, seconds=time.perf_counter() - start))
        return self.style()

    def style(self) -> Style:
        if self.finished:
            gen = self.current.generator
            gen.load_state_dict({k: sum(s[k].float() for s in self.finished).div(len(self.finished)).to(v.dtype)
                                 for k, v in gen.state_dict().items()})
        style = self.current.style()
        style.meta |= {k: v for k, v in self._first_meta.items() if k != "iterations"}
        style.meta |= {"iterations": self.iteration, "runs_averaged": max(1, len(self.finished))}
        return style
