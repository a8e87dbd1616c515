"""A model soup of one-shot CPU styles: `runs` fine-tunes of the same start (the sketch prior), trained one after
another with seeds seed, seed + 1, ... and averaged weight by weight (Wortsman et al. 2022, "Model soups").

Why: one example leaves a new photo's faint edges to chance, and the seed (which crops and flips the style saw,
in which order) moves its LPIPS by up to 0.01. Fine-tunes of one start stay in one basin, so their weight
average is a working network (one pass to apply, unlike an ensemble) that keeps what the runs agree on. Measured
on the one-shot benchmark (README; example 1, 50 BSDS500 test photos, 20 extra photos, mirror-averaged, mean over
the XDoG / HED / PiDiNet styles): three soups of three runs (seeds 50-52, 53-55, 56-58) 0.189 / 0.189 / 0.187,
against 0.194 / 0.184 / 0.194 for single runs (seeds 50 / 51 / 52). It costs `runs` times the training (a
3-run soup with 20 extra photos: 279 s against 92 s on 2 threads of this CPU); the applied style costs what one
run's does.

    trainer = cnn_trainer(backbone, photo, sketch, config, runs=3)   # a CNNOneShotTrainer when runs == 1
    style = trainer.run(on_event, cancel)                            # events count over all runs
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Callable, Optional

import torch

from ..diffusion.cnn import CNNBackbone
from ..errors import BadInputError
from ..images import ImageLike
from .cnn_training import CNNOneShotTrainer, CNNTrainConfig
from .store import Style
from .training import CancelFlag, TrainEvent

MAX_RUNS = 5


class CNNSoupTrainer:
    """Trains the runs one at a time (one view bank in memory) and keeps each finished run's weights. Stopped
    during a later run, the style is the soup of the runs already finished; stopped during the first, that run as
    it stands."""

    def __init__(self, backbone: CNNBackbone, photo: ImageLike, sketch: ImageLike, config: CNNTrainConfig,
                 runs: int, **kwargs):
        if not 1 <= runs <= MAX_RUNS:
            raise BadInputError(f"Runs averaged must be between 1 and {MAX_RUNS}, not {runs}.")
        self.cfg, self.runs, self.finished, self.before = config, runs, [], 0  # before: runs ahead of current
        self._make = lambda seed, **kw: CNNOneShotTrainer(backbone, photo, sketch,
                                                          dataclasses.replace(config, seed=seed), **(kwargs | kw))
        self.current = self._make(config.seed)
        # every run starts from the first run's start (the prior, a given generator, or the first seed's random
        # weights): runs from different random starts would not average into a working network
        self._start = copy.deepcopy(self.current.generator)
        self._meta = self.current.style().meta
        self.notes, self.prior, self.unlabeled = self.current.notes, self.current.prior, self.current.unlabeled

    @property
    def iteration(self) -> int:
        return self.before * self.cfg.iterations + self.current.iteration

    @property
    def generator(self) -> torch.nn.Module:
        return self.current.generator

    def example_loss(self) -> float:
        return self.current.example_loss()  # after run(): the soup's, which style() loaded into the generator

    def run(self, on_event: Optional[Callable[[TrainEvent], None]] = None, cancel: CancelFlag | None = None) -> Style:
        emit = on_event or (lambda e: None)
        total, start = self.cfg.iterations * self.runs, time.perf_counter()
        emit(TrainEvent("start", self.iteration, total, notes=self.notes))
        while True:
            offset = self.before * self.cfg.iterations

            def relay(ev: TrainEvent) -> None:
                if ev.kind in ("step", "preview"):
                    emit(dataclasses.replace(ev, iteration=ev.iteration + offset, total=total,
                                             seconds=time.perf_counter() - start))

            self.current.run(relay, cancel)
            if self.current.iteration < self.cfg.iterations:
                emit(TrainEvent("cancelled", self.iteration, total, seconds=time.perf_counter() - start))
                return self.style()
            self.finished.append({k: v.detach().clone() for k, v in self.current.generator.state_dict().items()})
            if len(self.finished) == self.runs:
                break
            # the next run reuses the loaded LPIPS network instead of loading it again
            self.current = self._make(self.cfg.seed + len(self.finished), generator=copy.deepcopy(self._start),
                                      lpips_model=self.current.lpips)
            self.before += 1
        emit(TrainEvent("done", self.iteration, total, seconds=time.perf_counter() - start))
        return self.style()

    def style(self) -> Style:
        if self.finished:
            gen = self.current.generator
            gen.load_state_dict({k: sum(s[k].float() for s in self.finished).div(len(self.finished)).to(v.dtype)
                                 for k, v in gen.state_dict().items()})
        style = self.current.style()
        style.meta |= {"prior": self._meta["prior"], "iterations": self.iteration,
                       "runs_averaged": max(1, len(self.finished))}
        return style


def cnn_trainer(backbone: CNNBackbone, photo: ImageLike, sketch: ImageLike, config: CNNTrainConfig | None = None,
                runs: int = 1, **kwargs) -> CNNOneShotTrainer | CNNSoupTrainer:
    """One fine-tune (runs == 1), or the soup of `runs` of them."""
    config = config or CNNTrainConfig()
    if runs == 1:
        return CNNOneShotTrainer(backbone, photo, sketch, config, **kwargs)
    return CNNSoupTrainer(backbone, photo, sketch, config, runs, **kwargs)
