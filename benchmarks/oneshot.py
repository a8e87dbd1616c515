"""One-shot styles on frozen VGG16 features, on DiffSketch's protocol with BSDS500 (issue 13).

Table 1, extractor styles: for each target style in {XDoG (DiffSketch's parameters), HED, PiDiNet}, ONE BSDS500
train photo + that extractor's sketch of it is the example; the style is trained, then sketches the first N
BSDS500 test photos, each compared with the extractor's own sketch of it: LPIPS(alex) and SSIM (means), with the
training time and seconds per photo. Photos are read with the long side at 256 px (481x321 -> 256x176, a multiple
of 16). No style is trained on its target's network: the backbone is ImageNet VGG16, not HED's fine-tuned VGG16
(HED starts from the same ImageNet weights, so the HED row is the one closest to that rule) nor PiDiNet. Same run: (a) random-init VGG16 (one example per style), (b) floors: a blank page and the best other
classic extractor, (c) three example photos per style, (d) the sketch prior: a style starts from
checkpoints/cnn_sketch_prior (style/cnn_prior.py: BSDS500 train + val human contours, these three example photos
left out, no test photo, no extractor's sketch); the rows without it and of the prior alone (applied as it is,
no example) say what the prior and the example each bring.

Table 2, a human style: ONE train photo + ONE of its human contour annotations (groundTruth .mat), tested against
all human annotations of the test photos with a boundary F-score, every method read at the same 256 px long side
(annotations moved to that grid, still 1 px thin; ODS: best single threshold over the set; tolerance 0.0075 of the
image diagonal, 2.3 px at 256x176; predictions thresholded at 0.1..0.9, thinned to
1 px, matched by distance transform: a predicted pixel is right if a boundary of any annotator is within the
tolerance, recall is averaged over annotators; no one-to-one matching, so figures are a little above the official
BSDS benchmark's). Next to PiDiNet and HED (trained on all of BSDS500) and Canny. With the prior, ours has seen
the human contours of 297 train + val photos, so it is not one-shot there: the row without the prior is.

Results go to runs/oneshot/results.jsonl as they are measured (a rerun skips runs already there), tables are
printed at the end, picture grids go to assets/benchmarks/oneshot_*.png.

    nice -n 5 python benchmarks/oneshot.py --test 50 --iterations 120      # the README figures, or in two processes:
    nice -n 10 python -m benchmarks.oneshot --examples 1 & nice -n 10 python -m benchmarks.oneshot --extra-only
    python -m benchmarks.oneshot --report                                  # then the tables of both
    python benchmarks/oneshot.py --test 4 --iterations 5 --examples 1      # a check of the script itself
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
SHARED = ROOT.parent / "shared"
if (SHARED / "weights").is_dir():
    os.environ.setdefault("DIFFSKETCH_WEIGHTS_DIR", str(SHARED / "weights"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks._util import machine  # noqa: E402
from diffsketch_core.diffusion.cnn import VGG16, VGG16_RANDOM, load_cnn_backbone  # noqa: E402
from diffsketch_core.extractors import extract_sketch  # noqa: E402
from diffsketch_core.perceptual import load_lpips  # noqa: E402
from diffsketch_core.style.cnn_photo2sketch import CNNPhotoToSketch  # noqa: E402
from diffsketch_core.style import cnn_prior  # noqa: E402
from diffsketch_core.style.cnn_training import CNNTrainConfig, cnn_trainer  # noqa: E402

BSDS = SHARED / "data" / "photos" / "bsds500"
STYLES = ("xdog", "hed", "pidinet")
CLASSIC = ("xdog", "hed", "pidinet", "canny")
EXAMPLES = ("100075", "35058", "159091")  # three BSDS500 train photos, fixed (the first: bears by a river)
NO_PRIOR = f"{VGG16}:no-prior"  # the same backbone, the generator starting from random weights
PRIOR_ONLY = f"{VGG16}:prior-only"  # the sketch prior applied as it is: no training on the example
WORK = 256
TOLERANCE = 0.0075
THRESHOLDS = np.round(np.arange(0.1, 0.95, 0.1), 2)


def _photo(split: str, pid: str, full: bool = False) -> Image.Image:
    img = Image.open(BSDS / "images" / split / f"{pid}.jpg").convert("RGB")
    if full:
        return img
    w, h = img.size
    s = WORK / max(w, h)
    return img.resize((round(w * s / 16) * 16, round(h * s / 16) * 16), Image.Resampling.LANCZOS)


def _teacher(cache: Path, method: str, split: str, pid: str, full: bool = False) -> Image.Image:
    path = cache / f"{method}{'_full' if full else ''}" / f"{split}_{pid}.png"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        extract_sketch(_photo(split, pid, full), method, resolution=None).image.save(path)
    return Image.open(path).convert("L")


def _human(split: str, pid: str) -> list[np.ndarray]:
    import scipy.io

    gt = scipy.io.loadmat(BSDS / "groundTruth" / split / f"{pid}.mat")["groundTruth"]
    return [gt[0, k]["Boundaries"][0, 0].astype(bool) for k in range(gt.shape[1])]


def _human_at(split: str, pid: str, size: tuple[int, int]) -> list[np.ndarray]:
    """Each annotator's boundaries at `size` (W, H), kept 1 px thin: every boundary pixel moved to its scaled place."""
    out = []
    for b in _human(split, pid):
        ys, xs = np.nonzero(b)
        m = np.zeros((size[1], size[0]), bool)
        m[np.minimum(np.round(ys * size[1] / b.shape[0]).astype(int), size[1] - 1),
          np.minimum(np.round(xs * size[0] / b.shape[1]).astype(int), size[0] - 1)] = True
        out.append(m)
    return out


def _human_sketch(split: str, pid: str, size: tuple[int, int]) -> Image.Image:
    """The first annotator's boundaries as a sketch at work size: 1-px lines thickened to 3 px at full size, so
    they survive the downscale as grey lines."""
    import cv2

    b = _human(split, pid)[0].astype(np.uint8)
    ink = cv2.dilate(b, np.ones((3, 3), np.uint8)).astype(np.float32)
    img = Image.fromarray(np.round(255 * (1 - ink)).astype(np.uint8), "L")
    return img.resize(size, Image.Resampling.LANCZOS)


def _arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L"), np.float32) / 255.0


class Scorer:
    def __init__(self):
        self.lpips = load_lpips()

    @torch.no_grad()
    def __call__(self, pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
        from skimage.metrics import structural_similarity

        t = lambda a: torch.from_numpy(a)[None, None].repeat(1, 3, 1, 1) * 2 - 1  # noqa: E731
        lp = float(self.lpips(t(pred), t(target)).mean())
        return lp, float(structural_similarity(pred, target, data_range=1.0))


def boundary_counts(ink: np.ndarray, gts: list[np.ndarray]) -> np.ndarray:
    """Per threshold: [matched predicted, predicted, matched boundary (summed over annotators), boundary]."""
    import cv2
    from skimage.morphology import thin

    h, w = ink.shape
    tol = TOLERANCE * float(np.hypot(h, w))
    union = np.logical_or.reduce(gts)
    d_union = cv2.distanceTransform((~union).astype(np.uint8), cv2.DIST_L2, 3)
    out = np.zeros((len(THRESHOLDS), 4))
    for i, th in enumerate(THRESHOLDS):
        pred = thin(ink >= th)
        d_pred = cv2.distanceTransform((~pred).astype(np.uint8), cv2.DIST_L2, 3) if pred.any() else None
        out[i, 0], out[i, 1] = (d_union[pred] <= tol).sum(), pred.sum()
        for g in gts:
            out[i, 2] += 0 if d_pred is None else (d_pred[g] <= tol).sum()
            out[i, 3] += g.sum()
    return out


def ods(counts: np.ndarray) -> tuple[float, float, float, float]:
    """(F, precision, recall, threshold) at the best threshold over the whole set."""
    p = counts[:, 0] / np.maximum(counts[:, 1], 1)
    r = counts[:, 2] / np.maximum(counts[:, 3], 1)
    f = 2 * p * r / np.maximum(p + r, 1e-9)
    i = int(f.argmax())
    return float(f[i]), float(p[i]), float(r[i]), float(THRESHOLDS[i])


def _tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, np.float32) / 255.0).permute(2, 0, 1)[None]


def _mirror(img: Image.Image, mirrored: bool) -> Image.Image:
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirrored else img


class Bench:
    def __init__(self, args):
        self.args = args
        self.cache = Path(args.cache)
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.results_path = self.out / "results.jsonl"
        self.done = {}
        if self.results_path.is_file():
            for line in self.results_path.read_text().splitlines():
                r = json.loads(line)
                self.done[r["run"]] = r
        self.test_ids = sorted(p.stem for p in (BSDS / "images" / "test").glob("*.jpg"))[:args.test]
        self.photos = {pid: _photo("test", pid) for pid in self.test_ids}
        # photos without sketches for the trainer's consistency term: train photos, never the examples or test
        train_ids = sorted(p.stem for p in (BSDS / "images" / "train").glob("*.jpg") if p.stem not in EXAMPLES)
        self.unlabeled = [_photo("train", pid) for pid in train_ids[:args.unlabeled]]
        self.scorer = Scorer()
        self.lpips = self.scorer.lpips
        self.backbones: dict[str, object] = {}
        self.features: dict[str, dict] = {}

    def record(self, r: dict) -> None:
        self.done[r["run"]] = r
        with self.results_path.open("a") as f:
            f.write(json.dumps(r) + "\n")
        print(json.dumps(r), flush=True)

    def backbone(self, source: str):
        source = source.split(":")[0]
        if source not in self.backbones:
            self.backbones.clear()
            self.features.clear()
            bb = load_cnn_backbone(source.split(":")[0], work_side=WORK)
            start = time.perf_counter()
            self.features = {(pid, m): {k: v.half() for k, v in bb.extract(_tensor(_mirror(img, m))).items()}
                             for pid, img in self.photos.items() for m in (False, True)}
            print(f"{source}: features of {len(self.photos)} test photos in {time.perf_counter() - start:.0f} s",
                  flush=True)
            self.backbones[source] = bb
        return self.backbones[source]

    def floors(self) -> None:
        for style in STYLES:
            for other in ("blank",) + tuple(m for m in CLASSIC if m != style):
                run = f"floor/{style}/{other}"
                if run in self.done:
                    continue
                scores = []
                for pid in self.test_ids:
                    target = _arr(_teacher(self.cache, style, "test", pid))
                    pred = np.ones_like(target) if other == "blank" else _arr(_teacher(self.cache, other, "test", pid))
                    scores.append(self.scorer(pred, target))
                lp, ss = np.mean(scores, 0)
                self.record({"run": run, "style": style, "method": other, "lpips": lp, "ssim": ss,
                             "photos": len(scores)})

    def train(self, source: str, photo: Image.Image, sketch: Image.Image):
        bb = self.backbone(source)
        cfg = CNNTrainConfig(iterations=0 if source == PRIOR_ONLY else self.args.iterations, seed=self.args.seed,
                             bank=self.args.bank, preview_every=10 ** 6, prior=source != NO_PRIOR)
        start = time.perf_counter()
        runs = 1 if source == PRIOR_ONLY else self.args.runs
        trainer = cnn_trainer(bb, photo, sketch, cfg, runs, lpips_model=self.lpips, unlabeled=self.unlabeled)
        if trainer.prior != (source in (VGG16, PRIOR_ONLY)):
            raise SystemExit(f"error: {source} {'found' if trainer.prior else 'did not find'} the sketch prior "
                             f"({cnn_prior.PRIOR_DIR}); the rows would be mislabelled")
        trainer.run()
        return trainer, time.perf_counter() - start

    @torch.no_grad()
    def predict(self, trainer, pid: str, mirrored: bool = False) -> np.ndarray:
        """The style's sketch of a test photo from the cached features; `mirrored`: of the mirrored photo, mirrored
        back (its mean with the plain one is what CNNPhotoToSketch(mirror=True) draws)."""
        feats = {k: v.float() for k, v in self.features[(pid, mirrored)].items()}
        out = trainer.generator.eval()(feats, _tensor(_mirror(self.photos[pid], mirrored)))[0, 0]
        return (out.flip(-1) if mirrored else out).clamp(0, 1).numpy()

    def style_run(self, style: str, source: str, example: str) -> None:
        run = f"style/{style}/{source}/{example}"
        if run in self.done:
            return
        photo = _photo("train", example)
        trainer, seconds = self.train(source, photo, _teacher(self.cache, style, "train", example))
        scores, mirrored, preds = [], [], {}
        start = time.perf_counter()
        for pid in self.test_ids:
            preds[pid] = self.predict(trainer, pid)
            scores.append(self.scorer(preds[pid], _arr(_teacher(self.cache, style, "test", pid))))
        per_photo = (time.perf_counter() - start) / len(self.test_ids)
        for pid in self.test_ids:  # the plain pass is the one above: only the mirrored pass is new
            averaged = (preds[pid] + self.predict(trainer, pid, mirrored=True)) / 2
            mirrored.append(self.scorer(averaged, _arr(_teacher(self.cache, style, "test", pid))))
        preds = {pid: preds[pid] for pid in self.test_ids[:self.args.grid]}
        lp, ss = np.mean(scores, 0)
        lpm, ssm = np.mean(mirrored, 0)
        self.record({"run": run, "style": style, "backbone": source, "example": example, "lpips": lp, "ssim": ss,
                     "lpips_mirror": lpm, "ssim_mirror": ssm,
                     "train_s": seconds, "iterations": trainer.iteration, "eval_s_per_photo_generator": per_photo,
                     "example_loss": trainer.example_loss(), "photos": len(scores), "unlabeled": len(self.unlabeled),
                     "runs_averaged": getattr(trainer, "runs", 1)})
        if source == VGG16 and example == EXAMPLES[0]:
            trainer.style().save(self.out / f"style_{style}")  # what speed() applies
            if not self.args.no_grids:
                self.grid(style, photo, _teacher(self.cache, style, "train", example), preds,
                          lambda pid: _teacher(self.cache, style, "test", pid))

    def human_run(self, example: str, source: str = VGG16) -> None:
        run = f"human/{'ours' if source == VGG16 else 'ours-no-prior'}/{example}"
        if run in self.done:
            return
        photo = _photo("train", example)
        sketch = _human_sketch("train", example, photo.size)
        trainer, seconds = self.train(source, photo, sketch)
        counts, preds, seconds_model = 0, {}, 0.0
        for pid in self.test_ids:
            start = time.perf_counter()
            ink = 1 - self.predict(trainer, pid)
            seconds_model += time.perf_counter() - start
            counts = counts + boundary_counts(ink, _human_at("test", pid, self.photos[pid].size))
            if pid in self.test_ids[:self.args.grid]:
                preds[pid] = 1 - ink
        per_photo = seconds_model / len(self.test_ids)
        f, p, r, th = ods(counts)
        self.record({"run": run, "example": example, "ods_f": f, "precision": p, "recall": r, "threshold": th,
                     "train_s": seconds, "s_per_photo_generator": per_photo, "photos": len(self.test_ids)})
        if example == EXAMPLES[0] and source == VGG16 and not self.args.no_grids:
            human = lambda pid: Image.fromarray(  # noqa: E731
                np.where(_human_at("test", pid, self.photos[pid].size)[0], 0, 255).astype(np.uint8), "L")
            self.grid("human", photo, sketch, preds, human)

    def human_baselines(self) -> None:
        for method in ("pidinet", "hed", "canny"):
            run = f"human/{method}"
            if run in self.done:
                continue
            counts = 0
            for pid in self.test_ids:
                ink = 1 - _arr(_teacher(self.cache, method, "test", pid))
                counts = counts + boundary_counts(ink, _human_at("test", pid, self.photos[pid].size))
            f, p, r, th = ods(counts)
            self.record({"run": run, "method": method, "ods_f": f, "precision": p, "recall": r, "threshold": th,
                         "photos": len(self.test_ids)})

    def speed(self) -> None:
        """Seconds per 512x512 photo through the whole apply path (VGG16 at 256, generator at 512)."""
        for threads, mirror in ((1, False), (2, False), (1, True), (2, True)):
            run = f"speed/{threads}" + ("/mirror" if mirror else "")
            if run in self.done or f"style/hed/{VGG16}/{EXAMPLES[0]}" not in self.done:
                continue
            from diffsketch_core.style.store import load_style

            bb = self.backbone(VGG16)
            model = CNNPhotoToSketch(load_style(self.out / "style_hed", bb), bb, mirror=mirror)
            old = torch.get_num_threads()
            torch.set_num_threads(threads)
            photos = [_photo("test", pid, full=True).resize((512, 512)) for pid in self.test_ids[:6]]
            model(photos[0])
            start = time.perf_counter()
            for p in photos[1:]:
                model(p)
            torch.set_num_threads(old)
            self.record({"run": run, "threads": threads, "mirror": mirror,
                         "s_per_512_photo": (time.perf_counter() - start) / 5})

    def grid(self, name: str, photo: Image.Image, sketch: Image.Image, preds: dict, target_of) -> None:
        """Example pair, then for each shown test photo: photo / target / ours (rows)."""
        cell = (192, 132)
        fit = lambda im: im.convert("RGB").resize(cell, Image.Resampling.LANCZOS)  # noqa: E731
        rows = [[fit(photo), fit(sketch), Image.new("RGB", cell, "white")]]
        for pid, pred in preds.items():
            ours = Image.fromarray((pred * 255).round().astype(np.uint8), "L")
            rows.append([fit(self.photos[pid]), fit(target_of(pid)), fit(ours)])
        pad = 4
        sheet = Image.new("RGB", (3 * cell[0] + 4 * pad, len(rows) * (cell[1] + pad) + pad), (200, 200, 200))
        for r, row in enumerate(rows):
            for c, im in enumerate(row):
                sheet.paste(im, (pad + c * (cell[0] + pad), pad + r * (cell[1] + pad)))
        path = ROOT / "assets" / "benchmarks" / f"oneshot_{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(path, optimize=True)
        print(f"wrote {path}", flush=True)


def tables(done: dict) -> str:
    lines = ["| style | ours: VGG16 ImageNet + prior (example 1) | mirror-averaged | examples 2, 3 | no prior | "
             "prior alone | random-init VGG16, no prior | blank page | nearest other extractor | train s | "
             "generator s/photo |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda r: f"{r['lpips']:.3f} / {r['ssim']:.3f}" if r else "-"  # noqa: E731
    fmt_m = lambda r: f"{r['lpips_mirror']:.3f} / {r['ssim_mirror']:.3f}" if r and "lpips_mirror" in r else "-"  # noqa: E731
    means = {"ours": [], "mirror": [], "noprior": [], "prioronly": [], "random": [], "blank": [], "other": []}
    for style in STYLES:
        ours = done.get(f"style/{style}/{VGG16}/{EXAMPLES[0]}")
        more = [done.get(f"style/{style}/{VGG16}/{e}") for e in EXAMPLES[1:]]
        rnd = done.get(f"style/{style}/{VGG16_RANDOM}/{EXAMPLES[0]}")
        noprior = done.get(f"style/{style}/{NO_PRIOR}/{EXAMPLES[0]}")
        prioronly = done.get(f"style/{style}/{PRIOR_ONLY}/{EXAMPLES[0]}")
        blank = done.get(f"floor/{style}/blank")
        others = [done[k] for k in done if k.startswith(f"floor/{style}/") and not k.endswith("/blank")]
        best = min(others, key=lambda r: r["lpips"]) if others else None
        for key, r in (("ours", ours), ("noprior", noprior), ("prioronly", prioronly), ("random", rnd),
                       ("blank", blank), ("other", best)):
            if r:
                means[key].append((r["lpips"], r["ssim"]))
        if ours and "lpips_mirror" in ours:
            means["mirror"].append((ours["lpips_mirror"], ours["ssim_mirror"]))
        lines.append(f"| {style} | {fmt(ours)} | {fmt_m(ours)} | {', '.join(fmt(m) for m in more)} | {fmt(noprior)} | "
                     f"{fmt(prioronly)} | {fmt(rnd)} | {fmt(blank)} | "
                     f"{fmt(best)}{' (' + best['method'] + ')' if best else ''} | "
                     f"{ours['train_s']:.0f} | {ours['eval_s_per_photo_generator']:.2f} |" if ours else
                     f"| {style} | - | | | | | | | | | |")
    mean = lambda k: (f"{np.mean([m[0] for m in means[k]]):.3f} / {np.mean([m[1] for m in means[k]]):.3f}"  # noqa: E731
                      if len(means[k]) == len(STYLES) else "-")
    all_ours = [done.get(f"style/{s}/{VGG16}/{e}") for s in STYLES for e in EXAMPLES]
    all_ours = [r for r in all_ours if r]
    all_m = [r for r in all_ours if "lpips_mirror" in r]
    all_m = (f" (mirror-averaged {np.mean([r['lpips_mirror'] for r in all_m]):.3f} / "
             f"{np.mean([r['ssim_mirror'] for r in all_m]):.3f})" if len(all_m) == len(all_ours) else "")
    lines.append(f"| **mean** | {mean('ours')} | {mean('mirror')} | all examples: "
                 f"{np.mean([r['lpips'] for r in all_ours]):.3f} / {np.mean([r['ssim'] for r in all_ours]):.3f}"
                 f"{all_m} | "
                 f"{mean('noprior')} | {mean('prioronly')} | {mean('random')} | {mean('blank')} | {mean('other')} | | |"
                 if all_ours else "| mean | - |")
    lines += ["", "| human style (ODS F, P, R at threshold) | F | P | R | threshold |", "|---|---|---|---|---|"]
    for key in [k for k in done if k.startswith("human/")]:
        r = done[key]
        lines.append(f"| {key[6:]} | {r['ods_f']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['threshold']} |")
    for key in [k for k in done if k.startswith("speed/")]:
        mirrored = " mirror-averaged" if done[key].get("mirror") else ""
        lines.append(f"\nspeed: {done[key]['s_per_512_photo']:.2f} s per 512x512 photo{mirrored} with "
                     f"{done[key]['threads']} thread(s) (VGG16 at 256, generator at 512)")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--test", type=int, default=50, help="BSDS500 test photos (the first N by name)")
    p.add_argument("--iterations", type=int, default=120)
    p.add_argument("--examples", type=int, default=3, help="example photos per style (1-3)")
    p.add_argument("--grid", type=int, default=3, help="test photos shown in each picture grid")
    p.add_argument("--seed", type=int, default=50)
    p.add_argument("--unlabeled", type=int, default=0, help="BSDS500 train photos (the first N by name, examples "
                   "left out) given to the trainer without sketches, for its consistency term")
    p.add_argument("--runs", type=int, default=1, help="fine-tunes averaged into each style (a model soup, "
                   "style/soup.py; seeds --seed, --seed + 1, ...)")
    p.add_argument("--bank", type=int, default=CNNTrainConfig.bank, help="augmented views with cached features per "
                   "training (the app's default)")
    p.add_argument("--prior", default=None, help="sketch prior folder (default: the shipped checkpoints/cnn_sketch_prior)")
    p.add_argument("--cache", default="/tmp/oneshot_cache", help="teacher sketches, computed once")
    p.add_argument("--skip", nargs="*", default=[], help="parts to skip: prior random human speed")
    p.add_argument("--styles", nargs="*", default=list(STYLES), choices=STYLES, help="target styles to train")
    p.add_argument("--out", default=str(ROOT / "runs" / "oneshot"), help="results.jsonl and trained styles")
    p.add_argument("--no-grids", action="store_true", help="leave assets/benchmarks alone")
    p.add_argument("--report", action="store_true", help="only print the tables of results.jsonl")
    p.add_argument("--extra-only", action="store_true", help="only examples 2..--examples (a second process can "
                   "run them beside the main rows; both append to the same results.jsonl)")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.prior:
        cnn_prior.PRIOR_DIR = Path(args.prior)
    bench = Bench(args)
    if args.extra_only:
        for ex in EXAMPLES[1:args.examples]:
            for style in args.styles:
                bench.style_run(style, VGG16, ex)
    elif not args.report:
        print(f"machine: {machine()}; {len(bench.test_ids)} test photos at {WORK} px long side; "
              f"{args.iterations} iterations per style", flush=True)
        bench.floors()
        for style in args.styles:
            bench.style_run(style, VGG16, EXAMPLES[0])
        if "speed" not in args.skip:
            bench.speed()
        if "prior" not in args.skip:
            for style in args.styles:
                bench.style_run(style, NO_PRIOR, EXAMPLES[0])
                bench.style_run(style, PRIOR_ONLY, EXAMPLES[0])
        if "random" not in args.skip:
            for style in args.styles:
                bench.style_run(style, VGG16_RANDOM, EXAMPLES[0])
        if "human" not in args.skip:
            bench.human_baselines()
            bench.human_run(EXAMPLES[0])
            bench.human_run(EXAMPLES[0], NO_PRIOR)
        for ex in EXAMPLES[1:args.examples]:
            for style in args.styles:
                bench.style_run(style, VGG16, ex)
    print(tables(bench.done))


if __name__ == "__main__":
    main()
