"""Stroke generation: full DDPM (1000 steps) vs uniform DDIM-30 vs the recognizability samplers, with the shipped
checkpoints. One table: network evaluations per sketch, seconds per sketch at batch 64 on this machine,
recognition by the project's classifier (sketches of each class) and by an independent one that never guides
(checkpoints/sketch_classifier_eval: another seed, input size, line width and depth), and the Frechet distance
between classifier features of generated and test-split sketches, with train-vs-test as the floor and, since the
distance grows as samples shrink, as many real train sketches as each sampler draws; "turning" is the median total
turning of the strokes in degrees per 100 px (strokes.distance.turning): a zig-zag sketch turns more than a smooth
one.

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
from diffsketch_core.strokes.distance import turning  # noqa: E402
from diffsketch_core.strokes.generate import GUIDANCE_INTERVAL, generate  # noqa: E402
from diffsketch_core.strokes.guidance import RATE as GUIDE_RATE  # noqa: E402
from diffsketch_core.strokes.loaders import CHECKPOINTS, DEFAULT_MODEL, load_recognizability, load_stroke_model  # noqa: E402
from diffsketch_core.strokes.raster import render  # noqa: E402

NAMES = {"ddpm": "DDPM-1000", "ddim": "DDIM-30 uniform", "skip": "r-skip (online)", "schedule": "r-schedule"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--per-class", type=int, default=4)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--samplers", nargs="+", default=["ddpm", "ddim", "skip", "schedule"])
    p.add_argument("--guidance", type=float, default=4.0)
    p.add_argument("--classifier-guidance", type=float, default=GUIDE_RATE, help="step size of classifier guidance "
                   "through the project's classifier (0: off); the 'independent' column judges with a second one")
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
    judge = load_classifier(CHECKPOINTS / "sketch_classifier_eval")  # never guides: is a gain real?
    classes = list(model.config.class_names)
    test, train = load_split(args.split, classes), load_split("train", classes)
    _, test_f = clf.predict(test.sketches)
    _, train_f = clf.predict(train.sketches[::5])
    print(f"machine: {machine()}; {args.per_class} sketches x {len(classes)} classes per sampler; batch {args.batch}; "
          f"classifier-free guidance {args.guidance} for t in {args.guidance_interval}; classifier guidance "
          f"{args.classifier_guidance}")
    print(f"{'sampler':<18}{'NFE/sketch':>11}{'s/sketch':>10}{'recognition':>13}{'independent':>13}{'Frechet':>10}"
          f"{'(indep.)':>10}{'turning':>9}")
    _, test_fj = judge.predict(test.sketches)
    turn = lambda sk: float(np.median([turning(x) for x in sk]))  # noqa: E731
    real = (recognition(clf.predict(test.sketches)[0], test.labels), recognition(judge.predict(test.sketches)[0], test.labels))
    print(f"{args.split + ' split (real)':<18}{'-':>11}{'-':>10}{real[0]:>13.3f}{real[1]:>13.3f}"
          f"{frechet_distance(train_f, test_f):>10.2f}{frechet_distance(judge.predict(train.sketches[::5])[1], test_fj):>10.2f}"
          f"{turn(test.sketches):>9.0f}   <- train vs {args.split}: the floor")
    # Frechet distances grow as the sample shrinks: real sketches, as many as each sampler draws, give its floor
    rng = np.random.default_rng(0)
    same_n = [train.sketches[i] for k in range(len(classes))
              for i in rng.choice(np.flatnonzero(train.labels == k), args.per_class, replace=False)]
    print(f"{'train, same n':<18}{'-':>11}{'-':>10}{'':>13}{'':>13}{frechet_distance(clf.predict(same_n)[1], test_f):>10.2f}"
          f"{frechet_distance(judge.predict(same_n)[1], test_fj):>10.2f}{turn(same_n):>9.0f}"
          f"   <- {len(same_n)} real sketches vs {args.split}: the floor at this sample size")
    per_class, confidence = {}, {}
    for sampler in args.samplers:
        wanted = [c for c in classes for _ in range(args.per_class)]
        sketches, seconds, nfe = [], 0.0, 0
        for start in range(0, len(wanted), args.batch):
            t0 = time.perf_counter()
            g = generate(wanted[start:start + args.batch], sampler=sampler, seed=start, guidance=args.guidance,
                         guidance_interval=tuple(args.guidance_interval), model=model,
                         recognizability=h if sampler in ("skip", "schedule") else None,
                         classifier_guidance=args.classifier_guidance, classifier=clf)
            seconds += time.perf_counter() - t0
            sketches += g.sketches
            nfe = g.nfe
        labels = [classes.index(c) for c in wanted]
        probs, feats = clf.predict(sketches)
        judged, judged_f = judge.predict(sketches)
        print(f"{NAMES[sampler]:<18}{nfe:>11}{seconds / len(sketches):>10.4f}{recognition(probs, np.array(labels)):>13.3f}"
              f"{recognition(judged, np.array(labels)):>13.3f}{frechet_distance(feats, test_f):>10.2f}"
              f"{frechet_distance(judged_f, test_fj):>10.2f}{turn(sketches):>9.0f}", flush=True)
        hits = [p.argmax(1) == np.array(labels) for p in (probs, judged)]
        per_class[sampler] = [tuple(float(h[np.array(labels) == k].mean()) for h in hits) for k in range(len(classes))]
        anyone = generate(None, n=min(len(wanted), 256),
                          sampler=sampler, seed=10_000, guidance=args.guidance,
                          guidance_interval=tuple(args.guidance_interval), model=model,
                          recognizability=h if sampler in ("skip", "schedule") else None,
                          classifier_guidance=args.classifier_guidance, classifier=clf)
        confidence[sampler] = (float(probs.max(1).mean()), float(clf.predict(anyone.sketches)[0].max(1).mean()),
                               float(judged.max(1).mean()), float(judge.predict(anyone.sketches)[0].max(1).mean()))
        if args.grid:
            path = grid(sketches, wanted, args.per_class, ROOT / "assets" / "benchmarks" / f"strokes_{sampler}.png")
            print(f"  picture grid: {path.relative_to(ROOT)}")
    if args.per_class_table:
        print("\nrecognition per class (" + ", ".join(NAMES[s] for s in args.samplers) + "), ours / independent:")
        print(f"| class | {' | '.join(NAMES[s] for s in args.samplers)} |\n|---|{'---|' * len(args.samplers)}")
        for k, c in enumerate(classes):
            print(f"| {c} | " + " | ".join("{:.2f} / {:.2f}".format(*per_class[s][k]) for s in args.samplers) + " |")
        print("| lowest | " + " | ".join(" / ".join(f"{min(v[j] for v in per_class[s]):.2f}" for j in (0, 1))
                                          for s in args.samplers) + " |")
    print("\nclassifier confidence (mean top-1 probability): class-conditional vs unconditional ('any')")
    for sampler, (cond, uncond, cond_j, uncond_j) in confidence.items():
        print(f"{NAMES[sampler]:<18} conditional {cond:.3f}   unconditional {uncond:.3f}   gap {cond - uncond:+.3f}"
              f"   (independent: {cond_j:.3f} / {uncond_j:.3f}, gap {cond_j - uncond_j:+.3f})")


def grid(sketches: list[np.ndarray], names: list[str], per_class: int, path: Path, cell: int = 96,
         columns: int = 8) -> Path:
    """One row per class (its name on the left), its first `columns` sketches in it, each fitted to a cell."""
    import cv2

    rows = [names[i] for i in range(0, len(names), per_class)]
    label = 110
    columns = min(columns, per_class)
    img = np.full((cell * len(rows), label + cell * columns), 255, np.uint8)
    for r, name in enumerate(rows):
        cv2.putText(img, name.replace("_", " "), (4, r * cell + cell // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 0, 1,
                    cv2.LINE_AA)
        for c in range(columns):
            img[r * cell:(r + 1) * cell, label + c * cell:label + (c + 1) * cell] = render(
                sketches[r * per_class + c], cell, 1.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path


if __name__ == "__main__":
    main()
