"""Stroke generation: full DDPM (1000 steps) vs uniform DDIM-30 vs the recognizability samplers, with the shipped
checkpoints. One table: network evaluations per sketch, seconds per sketch at batch 64 on this machine,
recognition by the project's classifier (sketches of each class), and the Frechet distance between classifier
features of generated and test-split sketches, with train-vs-test as the floor.

Then, for each sampler: recognition per class, a picture grid per class (assets/benchmarks/strokes_<sampler>.png
with --grid; one row per class), and how confidently the classifier reads unconditional ("any") sketches next to
class-conditional ones (mean top-1 probability of each; the issue asks for them within 0.1).

    python benchmarks/strokes.py --per-class 4 [--samplers ddpm ddim skip schedule] [--split valid] [--grid]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks._util import machine  # noqa: E402
from diffsketch_core.metrics import frechet_distance, recognition  # noqa: E402
from diffsketch_core.strokes.classifier import load_classifier  # noqa: E402
from diffsketch_core.strokes.data import load_split  # noqa: E402
from diffsketch_core.strokes.generate import GUIDANCE_INTERVAL, generate  # noqa: E402
from diffsketch_core.strokes.loaders import CHECKPOINTS, DEFAULT_MODEL, load_recognizability, load_stroke_model  # noqa: E402
from diffsketch_core.strokes.raster import render  # noqa: E402

NAMES = {"ddpm": "DDPM-1000", "ddim": "DDIM-30 uniform", "skip": "r-skip (online)", "schedule": "r-schedule"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--per-class", type=int, default=4)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--samplers", nargs="+", default=["ddpm", "ddim", "skip", "schedule"])
    p.add_argument("--guidance", type=float, default=4.0)
    p.add_argument("--guidance-interval", type=int, nargs=2, default=list(GUIDANCE_INTERVAL), metavar=("LO", "HI"),
                   help="guide only for LO <= t <= HI (every sampler); 0 999 guides throughout")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="stroke model folder")
    p.add_argument("--recognizability", default=None, help="h_phi folder (default: the shipped checkpoint)")
    p.add_argument("--split", default="test", choices=["valid", "test"], help="the real sketches compared with "
                   "(tune on valid, report on test)")
    p.add_argument("--grid", action="store_true", help="write a picture grid per class to assets/benchmarks/")
    p.add_argument("--per-class-table", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_stroke_model(args.model)
    h = load_recognizability(args.recognizability) if args.recognizability else None
    clf = load_classifier(CHECKPOINTS / "sketch_classifier")
    classes = list(model.config.class_names)
    test, train = load_split(args.split, classes), load_split("train", classes)
    _, test_f = clf.predict(test.sketches)
    _, train_f = clf.predict(train.sketches[::5])
    print(f"machine: {machine()}; {args.per_class} sketches x {len(classes)} classes per sampler; batch {args.batch}; "
          f"classifier-free guidance {args.guidance} for t in {args.guidance_interval}")
    print(f"{'sampler':<18}{'NFE/sketch':>11}{'s/sketch':>10}{'recognition':>13}{'Frechet':>10}")
    print(f"{args.split + ' split (real)':<18}{'-':>11}{'-':>10}{recognition(clf.predict(test.sketches)[0], test.labels):>13.3f}"
          f"{frechet_distance(train_f, test_f):>10.2f}   <- train vs {args.split}: the floor")
    per_class, confidence = {}, {}
    for sampler in args.samplers:
        wanted = [c for c in classes for _ in range(args.per_class)]
        sketches, seconds, nfe = [], 0.0, 0
        for start in range(0, len(wanted), args.batch):
            t0 = time.perf_counter()
            g = generate(wanted[start:start + args.batch], sampler=sampler, seed=start, guidance=args.guidance,
                         guidance_interval=tuple(args.guidance_interval), model=model,
                         recognizability=h if sampler in ("skip", "schedule") else None)
            seconds += time.perf_counter() - t0
            sketches += g.sketches
            nfe = g.nfe
        labels = [classes.index(c) for c in wanted]
        probs, feats = clf.predict(sketches)
        print(f"{NAMES[sampler]:<18}{nfe:>11}{seconds / len(sketches):>10.4f}{recognition(probs, np.array(labels)):>13.3f}"
              f"{frechet_distance(feats, test_f):>10.2f}", flush=True)
        hit = probs.argmax(1) == np.array(labels)
        per_class[sampler] = [float(hit[np.array(labels) == k].mean()) for k in range(len(classes))]
        anyone = generate(None, n=min(len(wanted), 256),
                          sampler=sampler, seed=10_000, guidance=args.guidance,
                          guidance_interval=tuple(args.guidance_interval), model=model,
                          recognizability=h if sampler in ("skip", "schedule") else None)
        confidence[sampler] = (float(probs.max(1).mean()), float(clf.predict(anyone.sketches)[0].max(1).mean()))
        if args.grid:
            path = grid(sketches, wanted, args.per_class, ROOT / "assets" / "benchmarks" / f"strokes_{sampler}.png")
            print(f"  picture grid: {path.relative_to(ROOT)}")
    if args.per_class_table:
        print("\nrecognition per class (" + ", ".join(NAMES[s] for s in args.samplers) + "):")
        print(f"| class | {' | '.join(NAMES[s] for s in args.samplers)} |\n|---|{'---|' * len(args.samplers)}")
        for k, c in enumerate(classes):
            print(f"| {c} | " + " | ".join(f"{per_class[s][k]:.2f}" for s in args.samplers) + " |")
        print("| lowest | " + " | ".join(f"{min(per_class[s]):.2f}" for s in args.samplers) + " |")
    print("\nclassifier confidence (mean top-1 probability): class-conditional vs unconditional ('any')")
    for sampler, (cond, uncond) in confidence.items():
        print(f"{NAMES[sampler]:<18} conditional {cond:.3f}   unconditional {uncond:.3f}   gap {cond - uncond:+.3f}")


def grid(sketches: list[np.ndarray], names: list[str], per_class: int, path: Path, cell: int = 96) -> Path:
    """One row per class (its name on the left), `per_class` sketches in it, each fitted to a cell."""
    import cv2

    rows = [names[i] for i in range(0, len(names), per_class)]
    label = 110
    img = np.full((cell * len(rows), label + cell * per_class), 255, np.uint8)
    for r, name in enumerate(rows):
        cv2.putText(img, name.replace("_", " "), (4, r * cell + cell // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 0, 1,
                    cv2.LINE_AA)
        for c in range(per_class):
            img[r * cell:(r + 1) * cell, label + c * cell:label + (c + 1) * cell] = render(
                sketches[r * per_class + c], cell, 1.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path


if __name__ == "__main__":
    main()
