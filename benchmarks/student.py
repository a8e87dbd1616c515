"""The shipped sketch student against its teacher (HED) and the other extractors, on BSDS500 test photos at 512x512.

    DIFFSKETCH_WEIGHTS_DIR=../shared/weights python benchmarks/student.py --n 50 --threads 2 \
        [--teacher-cache /tmp/hed_test_cache] [--grid assets/benchmarks/student_grid.png]

Measures, as run:
- seconds per photo at 512x512, batch 1 (median over --time-photos photos, after one warm-up) and batch 8 (one
  batch of 8 photos through the network; XDoG has no batch form, so 8 photos one after another), for the student,
  HED, PiDiNet and XDoG, all in this process with the same thread count; the student as the Fast extractor runs
  it (ONNX Runtime where installed), mirror-averaged (mirror.py), in PyTorch (channels-last), and in ONNX Runtime
  on one thread;
- the student against the teacher on --n photos (--mirror: the mirror-averaged student): LPIPS(alex) between the
  two sketches and SSIM (skimage, on the ink maps, data range 1), drawn by the Fast extractor's runtime;
- the boundary F-score (ODS: one threshold for the whole set) of student and teacher on BSDS500's human
  annotations. The maps are computed at 512x512 and resized back to the photo's own size; each threshold's
  binary map is thinned to one-pixel lines; a predicted pixel is correct when an annotator's boundary lies within
  0.0075 x the image diagonal (BSDS's tolerance), an annotator's pixel is recalled when a predicted pixel lies that
  close. The official benchmark matches pixels one-to-one (correspondPixels); this distance-transform version
  does not, so its figures run a little higher than published ones. Student and teacher are scored the same way.
Teacher sketches at 512x512 are cached (diffsketch_core.style.distill.build_cache), so a rerun skips HED.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._util import machine  # noqa: E402
from diffsketch_core.extractors import hed, pidinet, student, xdog  # noqa: E402
from diffsketch_core.images import load_image  # noqa: E402
from diffsketch_core.perceptual import load_lpips  # noqa: E402
from diffsketch_core.style.distill import build_cache, cache_jobs  # noqa: E402

BSDS = ROOT.parent / "shared" / "data" / "photos" / "bsds500"
THRESHOLDS = np.linspace(0.05, 0.95, 19)


def _photos(folder: Path, n: int) -> list[Path]:
    return sorted(folder.glob("*.jpg"))[:n]


def _tensor(imgs: list[Image.Image]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.asarray(i, dtype=np.float32) / 255.0).permute(2, 0, 1) for i in imgs])


def _median_time(fn, inputs) -> float:
    fn(inputs[0])  # warm-up: weights, allocator, oneDNN kernels
    times = []
    for x in inputs:
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _batch_time(fn, batch) -> float:
    fn(batch[:1])
    t0 = time.perf_counter()
    fn(batch)
    return (time.perf_counter() - t0) / len(batch)


def timings(imgs: list[Image.Image], batch8: list[Image.Image], stud) -> dict[str, tuple[float, float]]:
    hed_net = hed._load(str(hed.weights_path()))
    pidi = pidinet._load(pidinet._where()).netNetwork.eval()

    fast_run = student.runner(stud)  # what the Fast extractor runs: ONNX Runtime where installed, else PyTorch

    @torch.inference_mode()
    def run_student(x):
        return fast_run(x)

    @torch.inference_mode()
    def run_student_torch(x):
        return stud(x.contiguous(memory_format=torch.channels_last))

    @torch.inference_mode()
    def run_hed(x):
        return hed_net(x.flip(1) * 255)  # RGB 0..1 -> BGR 0..255

    @torch.inference_mode()
    def run_pidi(x):
        return pidi(x.flip(1))[-1]  # controlnet_aux feeds BGR 0..1

    out = {}
    one = [_tensor([i]) for i in imgs]
    many = _tensor(batch8)
    runtime = "ONNX Runtime" if isinstance(fast_run, student.OnnxStudent) else "PyTorch"
    mirrored = student.runner(stud, mirror=True)
    rows = [(f"student ({runtime})", run_student), (f"student mirror-averaged ({runtime})", mirrored),
            ("student (PyTorch, channels-last)", run_student_torch)]
    if isinstance(fast_run, student.OnnxStudent) and torch.get_num_threads() > 1:
        one_thread = student.OnnxStudent(stud, 1)  # on a shared CPU one thread can beat two (threads wait on each other)
        rows.append(("student (ONNX Runtime, 1 thread)", lambda x: one_thread(x)))
    for name, fn in [*rows, ("HED", run_hed), ("PiDiNet", run_pidi)]:
        out[name] = (_median_time(fn, one), _batch_time(fn, many))
        print(f"  {name}: {out[name][0]:.3f} s/photo at batch 1, {out[name][1]:.3f} at batch 8", flush=True)
    b1 = _median_time(xdog.edges, imgs)
    t0 = time.perf_counter()
    for i in batch8:
        xdog.edges(i)
    out["XDoG"] = (b1, (time.perf_counter() - t0) / len(batch8))
    # what the "fast" extractor does per photo (PIL in, ink array out, conversions included)
    out["student, PIL photo in"] = (_median_time(lambda i: student.sketch_with(stud, i), imgs), float("nan"))
    return out


def _boundaries(mat: Path) -> list[np.ndarray]:
    from scipy.io import loadmat

    gt = loadmat(str(mat))["groundTruth"][0]
    return [np.asarray(g["Boundaries"][0, 0], bool) for g in gt]


def f_counts(ink: np.ndarray, gts: list[np.ndarray]) -> np.ndarray:
    """Per threshold: [matched predicted, predicted, recalled annotated, annotated] (see the module doc)."""
    import cv2
    from skimage.morphology import thin

    h, w = ink.shape
    tol = 0.0075 * np.hypot(h, w)
    dt_gt = [cv2.distanceTransform((~g).astype(np.uint8), cv2.DIST_L2, 5) for g in gts]
    counts = np.zeros((len(THRESHOLDS), 4))
    for k, t in enumerate(THRESHOLDS):
        pred = thin(ink >= t)
        n_pred = pred.sum()
        if n_pred:
            matched = np.zeros_like(pred)
            for d in dt_gt:
                matched |= pred & (d <= tol)
            dt_pred = cv2.distanceTransform((~pred).astype(np.uint8), cv2.DIST_L2, 5)
            recalled = sum(int((g & (dt_pred <= tol)).sum()) for g in gts)
        else:
            matched, recalled = pred, 0
        counts[k] = [matched.sum(), n_pred, recalled, sum(int(g.sum()) for g in gts)]
    return counts


def ods(counts: np.ndarray) -> tuple[float, float]:
    """(best F over thresholds of the summed counts, that threshold)."""
    p = counts[:, 0] / np.maximum(counts[:, 1], 1)
    r = counts[:, 2] / np.maximum(counts[:, 3], 1)
    f = 2 * p * r / np.maximum(p + r, 1e-12)
    k = int(np.argmax(f))
    return float(f[k]), float(THRESHOLDS[k])


def quality(photos: list[Path], teacher_dir: Path, stud, size: int, grid: Path | None,
            mirror: bool = False) -> dict:
    from skimage.metrics import structural_similarity

    lp = load_lpips()
    run = student.runner(stud, mirror)  # the Fast extractor's runtime, so the quality is that of what the app draws
    lpips_v, ssim_v = [], []
    counts = {"student": 0, "HED": 0}
    rows = []
    for i, (path, _, key) in enumerate(cache_jobs(photos, [(size, size)])):
        photo = load_image(path).image
        native = photo.size
        small = photo.resize((size, size), Image.Resampling.LANCZOS)
        teacher = np.asarray(Image.open(teacher_dir / f"{key}.ink.png"), dtype=np.float32) / 255.0
        with torch.inference_mode():
            s = run(_tensor([small]))[0, 0].float().numpy()
            a = torch.from_numpy(1 - 2 * s)[None, None].expand(1, 3, -1, -1)
            b = torch.from_numpy(1 - 2 * teacher)[None, None].expand(1, 3, -1, -1)
            lpips_v.append(float(lp(a, b)))
        ssim_v.append(float(structural_similarity(s, teacher, data_range=1.0)))
        mat = BSDS / "groundTruth" / "test" / f"{path.stem}.mat"
        if mat.is_file():
            gts = _boundaries(mat)
            for name, ink in [("student", s), ("HED", teacher)]:
                back = np.asarray(Image.fromarray(ink).resize(native, Image.Resampling.BILINEAR))
                counts[name] = counts[name] + f_counts(back, gts)
        if grid is not None and i < 4:
            rows.append([small, Image.fromarray(np.round((1 - teacher) * 255).astype(np.uint8)).convert("RGB"),
                         Image.fromarray(np.round((1 - s) * 255).astype(np.uint8)).convert("RGB")])
        if (i + 1) % 10 == 0:
            print(f"  quality: {i + 1}/{len(photos)}", flush=True)
    if grid is not None and rows:
        cell = 256
        sheet = Image.new("RGB", (cell * len(rows), cell * 3), "white")
        for c, col in enumerate(rows):
            for r, im in enumerate(col):  # rows: photo / teacher / student
                sheet.paste(im.resize((cell, cell), Image.Resampling.LANCZOS), (c * cell, r * cell))
        grid.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(grid)
    out = {"lpips": float(np.mean(lpips_v)), "ssim": float(np.mean(ssim_v)), "n": len(lpips_v)}
    for name, c in counts.items():
        if not isinstance(c, int):
            out[f"ods_{name}"] = ods(c)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", default=str(BSDS / "images" / "test"))
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--time-photos", type=int, default=5, help="photos timed at batch 1 (after a warm-up)")
    p.add_argument("--student", default=str(student.CHECKPOINT))
    p.add_argument("--teacher-cache", default=str(ROOT / "runs" / "hed_test_cache"))
    p.add_argument("--grid", default=str(ROOT / "assets" / "benchmarks" / "student_grid.png"))
    p.add_argument("--skip-timing", action="store_true")
    p.add_argument("--mirror", action="store_true", help="score the mirror-averaged student (Photo -> Sketch's "
                   "Mirror-averaged with Fast (student))")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    photos = _photos(Path(args.photos), args.n)
    stud = student.load_student(args.student).to(memory_format=torch.channels_last)
    print(f"machine: {machine()}; {len(photos)} BSDS500 test photos resized to {args.size}x{args.size}; "
          f"student {args.student} ({student.n_params(stud):,} parameters)", flush=True)
    t0 = time.perf_counter()
    rep = build_cache(photos, hed.edges, args.teacher_cache, [(args.size, args.size)])
    print(f"teacher (HED) sketches: {rep.written} computed, {rep.reused} cached ({time.perf_counter() - t0:.0f} s)")
    if not args.skip_timing:
        imgs = [load_image(q).image.resize((args.size, args.size), Image.Resampling.LANCZOS) for q in photos[:8]]
        t = timings(imgs[:args.time_photos], imgs, stud)
        print("\n| extractor | s / photo, batch 1 | s / photo, batch 8 | vs PiDiNet (batch 1) |\n|---|---|---|---|")
        for name, (b1, b8) in t.items():
            print(f"| {name} | {b1:.3f} | {b8:.3f} | {t['PiDiNet'][0] / b1:.1f}x |")
    q = quality(photos, Path(args.teacher_cache), stud, args.size, Path(args.grid) if args.grid else None,
                args.mirror)
    what = "mirror-averaged student" if args.mirror else "student"
    print(f"\n{what} vs teacher on {q['n']} photos: LPIPS(alex) {q['lpips']:.4f}, SSIM {q['ssim']:.4f}")
    print("\n| | boundary F (ODS, approx.) | threshold |\n|---|---|---|")
    for name in ("HED", "student"):
        if f"ods_{name}" in q:
            f, thr = q[f"ods_{name}"]
            print(f"| {name} | {f:.3f} | {thr:.2f} |")


if __name__ == "__main__":
    main()
