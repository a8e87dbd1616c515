"""Fit h_phi, the recognizability predictor, on full trajectories of a stroke model, and write the precomputed
r(t) schedule into its config (see `recognizability`).

    python -m diffsketch_core.strokes.fit_recognizability --out checkpoints/recognizability
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from .. import cli
from ..checkpoints import save_fp16
from .classifier import load_classifier
from .diffusion import GUIDANCE_INTERVAL
from .loaders import DEFAULT_CLASSIFIER, DEFAULT_MODEL, DEFAULT_RECOGNIZABILITY, load_stroke_model
from .recognizability import RecognizabilityNet, fit, record_trajectories, schedule_from_curve


def _parser() -> argparse.ArgumentParser:
    p = cli.parser("diffsketch_core.strokes.fit_recognizability", __doc__)
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--classifier", default=str(DEFAULT_CLASSIFIER))
    p.add_argument("--out", default=str(DEFAULT_RECOGNIZABILITY))
    p.add_argument("--batches", type=cli.at_least(1), default=8,
                   help="trajectory batches (each: one sketch per class x per-class)")
    p.add_argument("--per-class", type=cli.at_least(1), default=2)
    p.add_argument("--every", type=cli.at_least(1), default=10)
    p.add_argument("--schedule-steps", type=cli.at_least(1), default=6, help="length of the precomputed schedule")
    p.add_argument("--guidance", type=cli.non_negative, default=4.0)
    p.add_argument("--guidance-interval", type=int, nargs=2, default=list(GUIDANCE_INTERVAL), metavar=("LO", "HI"))
    p.add_argument("--epochs", type=cli.at_least(1), default=8)
    return p


def _main(args: argparse.Namespace) -> int:
    model, clf = load_stroke_model(args.model), load_classifier(args.classifier)
    start = time.time()
    labels = torch.arange(model.num_classes).repeat_interleave(args.per_class)
    data = []
    for b in range(args.batches):
        data.append(record_trajectories(model, clf, labels, args.every, seed=1000 + b, guidance=args.guidance,
                                        guidance_interval=tuple(args.guidance_interval)))
        cli.progress(b + 1, args.batches, f"trajectories: final recognition {data[-1].curve[-1]:.3f}",
                     time.time() - start)
    curve_t, curve_r = data[0].t, np.mean([d.curve for d in data], 0)
    schedule = schedule_from_curve(curve_t, curve_r, args.schedule_steps)
    h = RecognizabilityNet(curve_t=tuple(int(v) for v in curve_t), curve_r=tuple(float(v) for v in curve_r),
                           schedule=tuple(schedule))
    final = fit(h, data, args.epochs)
    save_fp16(h, args.out)
    report = {"model": os.path.relpath(args.model), "trajectories": len(labels) * args.batches, "every": args.every,
              "guidance": args.guidance, "guidance_interval": args.guidance_interval, "final_bce": final,
              "final_recognition": float(curve_r[-1]), "schedule": schedule, "seconds": round(time.time() - start)}
    (Path(args.out) / "training.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(_parser(), _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
