"""The sketch student and its distillation: shapes, loss going down, the cache (bad files, failing teacher,
resume), a 2-process Accelerate run equal to one process, the shipped student, and a style's own student."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from conftest import ROOT, ink_mask
from test_app import req, uploaded
from test_mirror import leftish
from diffsketch_core import onnx_runtime
from diffsketch_core.errors import BadInputError
from diffsketch_core.extractors import extract_sketch, needs, ready_methods
from diffsketch_core.extractors import student as fast
from diffsketch_core.extractors.student import SketchStudent, load_student, n_params
from diffsketch_core.extractors.xdog import edges as xdog_edges
from diffsketch_core.style import distill, views
from diffsketch_core.style.student import attach_student, check_student_folder, style_student
from diffsketch_core.style.grow import deepen, widen

TINY = dict(widths=(8, 16), blocks=(0, 1), head=8)


def _tiny_cfg(**kw):
    return distill.TrainConfig(steps=kw.pop("steps", 6), batch=kw.pop("batch", 4), crop=32, lr=3e-3, warmup=1,
                               lpips=kw.pop("lpips", 0.0), save_every=kw.pop("save_every", 1000), widths=TINY["widths"],
                               blocks=TINY["blocks"], head=TINY["head"], **kw)


def _photo(seed: int, size=(56, 40)) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, tuple(int(v) for v in rng.integers(150, 255, 3)))
    d = ImageDraw.Draw(img)
    for _ in range(3):
        x0, y0 = int(rng.integers(0, size[0] - 12)), int(rng.integers(0, size[1] - 12))
        d.rectangle([x0, y0, x0 + int(rng.integers(6, 20)), y0 + int(rng.integers(6, 20))],
                    fill=tuple(int(v) for v in rng.integers(0, 120, 3)))
    return img


@pytest.fixture
def photo_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        _photo(i).save(folder / f"p{i}.png")
    (folder / "notes.txt").write_text("not a photo")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return folder


def test_student_keeps_any_size_and_refuses_wrong_channels():
    model = SketchStudent(**TINY).eval()
    for h, w in [(37, 50), (64, 64), (17, 9)]:
        out = model(torch.rand(2, 3, h, w))
        assert out.shape == (2, 1, h, w) and 0 <= out.min() and out.max() <= 1
    with pytest.raises(BadInputError, match="3, H, W"):
        model(torch.rand(1, 4, 32, 32))
    assert 500_000 < n_params(SketchStudent()) < 3_000_000  # the default is inside the budget


def test_fast_runtime_draws_what_pytorch_draws_and_falls_back(monkeypatch):
    import importlib.util

    model = SketchStudent(**TINY).eval()
    x = torch.rand(1, 3, 37, 50)
    with torch.inference_mode():
        ref = model(x)
        run = fast.runner(model)
        onnx_here = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime"))  # both in requirements.txt
        assert isinstance(run, fast.OnnxStudent) == bool(onnx_here)
        assert fast.runner(model) is run  # built once per model and thread count
        for h, w in [(37, 50), (17, 9), (64, 48)]:  # any size, though exported at 64x64
            y = torch.rand(2, 3, h, w)
            torch.testing.assert_close(run(y), model(y), atol=1e-5, rtol=0)
        monkeypatch.setenv(onnx_runtime.RUNTIME_ENV, "torch")
        assert not isinstance(fast.runner(model), fast.OnnxStudent)
        torch.testing.assert_close(fast.runner(model)(x), ref)
        monkeypatch.delenv(onnx_runtime.RUNTIME_ENV)
        monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not installed: PyTorch runs it
        other = SketchStudent(**TINY).eval()
        assert not isinstance(fast.runner(other), fast.OnnxStudent) and fast.runner(other)(x).shape == (1, 1, 37, 50)


def test_mirror_averaged_runner_is_the_mean_of_both_passes(monkeypatch):
    model = SketchStudent(**TINY).eval()
    x = torch.rand(2, 3, 37, 50)
    with torch.inference_mode():
        ref = (model(x) + model(x.flip(-1)).flip(-1)) / 2
        assert not torch.allclose(ref, model(x), atol=1e-4)
        run = fast.runner(model, mirror=True)
        assert run is not fast.runner(model) and fast.runner(model, mirror=True) is run
        torch.testing.assert_close(run(x), ref, atol=1e-5, rtol=0)
        monkeypatch.setenv(onnx_runtime.RUNTIME_ENV, "torch")
        torch.testing.assert_close(fast.runner(model, mirror=True)(x), ref, atol=1e-5, rtol=0)
        img = Image.fromarray((np.random.default_rng(0).random((30, 41, 3)) * 255).astype(np.uint8))
        a = fast.sketch_with(model, img, mirror=True)
        b = fast.sketch_with(model, img.transpose(Image.Transpose.FLIP_LEFT_RIGHT), mirror=True)
        np.testing.assert_allclose(a, b[:, ::-1], atol=1e-5)  # a mirrored photo gets the mirrored ink


def test_scan_photos_skips_and_counts_bad_files(photo_folder, tmp_path):
    found = distill.scan_photos(photo_folder)
    assert [p.name for p in found.photos] == ["p0.png", "p1.png", "p2.png"]
    assert len(found.skipped) == 2 and any("broken.jpg" in s for s in found.skipped)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInputError, match="No usable photos"):
        distill.scan_photos(empty)
    (empty / "x.txt").write_text("x")
    with pytest.raises(BadInputError, match="1 files skipped"):
        distill.scan_photos(empty)


def test_cache_skips_a_failing_photo_and_resumes(photo_folder, tmp_path):
    photos = distill.scan_photos(photo_folder).photos

    def picky(img):  # a teacher that fails on one photo only
        if img.getpixel((0, 0)) == _photo(1).getpixel((0, 0)):
            raise RuntimeError("teacher broke")
        return xdog_edges(img)

    sizes = distill.parse_sizes("native,32x24")
    first = distill.build_cache(photos, picky, tmp_path / "cache", sizes)
    assert first.written == 4 and len(first.failed) == 2 and all("teacher broke" in f for f in first.failed)
    again = distill.build_cache(photos, picky, tmp_path / "cache", sizes)
    assert again.written == 0 and again.reused == 4 and len(again.failed) == 2  # resumed, not redone
    keys = distill.cached_pairs(tmp_path / "cache")
    assert len(keys) == 4 and sum(k.endswith("32x24") for k in keys) == 2
    ink = np.asarray(Image.open(tmp_path / "cache" / f"{keys[0]}.ink.png"))
    assert ink.max() > 100  # the teacher's lines, stored as ink


def test_views_are_seeded_by_name_and_cached_beside_the_photos(photo_folder, tmp_path, capsys):
    out = tmp_path / "views"
    assert views.main([str(photo_folder), str(out), "--side", "32"]) == 0
    said = capsys.readouterr()
    assert "wrote 6 views" in said.out and "2 files skipped: " in said.err and "broken.jpg" in said.err
    made = sorted(p.name for p in out.iterdir())
    assert made == [f"p{i}-{k}.png" for i in range(3) for k in ("turn", "zoom")]
    assert all(Image.open(out / m).size == (32, 32) for m in made)
    again = views.views(Image.open(photo_folder / "p0.png").convert("RGB"), "p0.png", 32)
    # the same name gives the same view; another name another
    assert np.array_equal(np.asarray(again["zoom"]), np.asarray(Image.open(out / "p0-zoom.png")))
    other = views.views(Image.open(photo_folder / "p0.png").convert("RGB"), "p9.png", 32)
    assert not np.array_equal(np.asarray(other["zoom"]), np.asarray(again["zoom"]))
    # a second draw adds new views beside the first, which stay as they were
    first = (out / "p0-zoom.png").read_bytes()
    assert views.main([str(photo_folder), str(out), "--side", "32", "--draw", "1"]) == 0
    made = sorted(p.name for p in out.iterdir())
    assert made == sorted([f"p{i}-{k}{d}.png" for i in range(3) for k in ("turn", "zoom") for d in ("", "1")])
    assert (out / "p0-zoom.png").read_bytes() == first
    assert not np.array_equal(np.asarray(Image.open(out / "p0-zoom1.png")), np.asarray(again["zoom"]))
    cache = tmp_path / "cache"
    distill.build_cache(distill.scan_photos(photo_folder).photos, xdog_edges, cache)
    distill.build_cache(distill.scan_photos(out).photos, xdog_edges, cache)
    assert len(distill.cached_pairs(cache)) == 3 + 12  # training takes every pair in the cache


def test_a_turned_view_is_a_quarter_turn():
    img = Image.new("RGB", (60, 40), "white")
    ImageDraw.Draw(img).rectangle([0, 0, 59, 5], fill="black")  # a bar along the top
    turn = np.asarray(views.views(img, "bar.png", 48)["turn"].convert("L"), dtype=float)
    left, right, top = turn[:, :4].mean(), turn[:, -4:].mean(), turn[:4, 8:-8].mean()
    assert min(left, right) < 80 < top  # the bar now runs down one side


def test_views_cli_refuses_a_folder_inside_the_photos(photo_folder, tmp_path, capsys):
    assert views.main([str(photo_folder), str(photo_folder / "v")]) == 2
    assert "outside the photo folder" in capsys.readouterr().err and not (photo_folder / "v").exists()
    empty = tmp_path / "e"
    empty.mkdir()
    assert views.main([str(empty), str(tmp_path / "v")]) == 2
    assert "error: No usable photos" in capsys.readouterr().err


def test_a_few_steps_lower_the_loss_and_resume_is_exact(photo_folder, tmp_path):
    photos = distill.scan_photos(photo_folder).photos
    distill.build_cache(photos, xdog_edges, tmp_path / "cache")
    cfg = _tiny_cfg(steps=40, save_every=20)
    model = distill.train_student(tmp_path / "cache", tmp_path / "run", cfg)
    hist = json.loads((tmp_path / "run" / "state.json").read_text())["history"]
    assert hist[-1]["loss"] < 0.8 * hist[0]["loss"], hist
    # stopped after 20 steps, resumed to 40: the same weights as 40 in one go (batches are a function of the step)
    class StopAt20:
        calls = 0

        def is_set(self):
            self.calls += 1
            return self.calls > 20

    distill.train_student(tmp_path / "cache", tmp_path / "run2", cfg, cancel=StopAt20())
    assert json.loads((tmp_path / "run2" / "state.json").read_text())["step"] == 20
    resumed = distill.train_student(tmp_path / "cache", tmp_path / "run2", cfg)
    for a, b in zip(model.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_distill_end_to_end_with_lpips_and_stop(photo_folder, tmp_path):
    events = []
    summary = distill.distill(photo_folder, xdog_edges, tmp_path / "work", _tiny_cfg(steps=4, lpips=0.5),
                              on_event=events.append)
    assert summary["photos"] == 3 and len(summary["skipped_files"]) == 2 and summary["pairs"] == 3
    student = load_student(summary["student"])
    assert student.dtype == torch.float32 and n_params(student) == n_params(SketchStudent(**TINY))
    on_disk = next(Path(summary["student"]).glob("*.safetensors"))
    from safetensors.torch import load_file
    assert all(t.dtype == torch.float16 for t in load_file(str(on_disk)).values())
    assert {e["kind"] for e in events} == {"cache", "train"} and "lpips" in events[-1]

    class StopAfterCache:
        def is_set(self):
            return any(e["kind"] == "cache" for e in later)

    later = []
    stopped = distill.distill(photo_folder, xdog_edges, tmp_path / "work2", _tiny_cfg(steps=4),
                              on_event=later.append, cancel=StopAfterCache())
    assert stopped["student"] is None


def _torchrun(args, nproc=2):
    """`accelerate launch --cpu --num_processes 2` starts one process unless MPI is set up, so the processes are
    started the way `accelerate launch --multi_gpu` starts them on a GPU machine: with torchrun. Accelerate reads
    the rank and world size from the environment and syncs gradients over gloo."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="true")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", "29517",
           "-m", "diffsketch_core.style.distill", *args]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_two_accelerate_processes_make_the_same_pairs_and_model_as_one(photo_folder, tmp_path, capsys):
    common = ["--photos", str(photo_folder), "--teacher", "xdog", "--sizes", "native,40x32", "--steps", "3",
              "--batch", "4", "--crop", "32", "--lpips", "0", "--widths", "8,16", "--blocks", "0,1", "--threads", "1"]
    runs = {}
    for n in (1, 2):
        d = tmp_path / f"n{n}"
        args = [*common, "--cache", str(d / "cache"), "--run-dir", str(d / "run"), "--out", str(d / "student")]
        if n == 1:
            assert distill.main(args) == 0
            out = capsys.readouterr().out
        else:
            out = _torchrun(args)
        assert "6/6 pairs" in out
        runs[n] = d
    files = {n: sorted(p.name for p in (runs[n] / "cache").iterdir()) for n in runs}
    assert files[1] == files[2] and len(files[1]) == 12  # 3 photos x 2 sizes x (photo, ink), none twice
    for name in files[1]:
        assert (runs[1] / "cache" / name).read_bytes() == (runs[2] / "cache" / name).read_bytes()
    rec = json.loads((runs[2] / "student" / "training.json").read_text())
    assert rec["processes"] == 2 and rec["steps"] == 3
    # each process took half of every global batch and DDP averaged the gradients: the same model as one process
    one, two = load_student(runs[1] / "student"), load_student(runs[2] / "student")
    for a, b in zip(one.parameters(), two.parameters()):
        torch.testing.assert_close(a, b, atol=2e-3, rtol=0)  # fp16 export
    assert sum((a - b).abs().sum() for a, b in zip(one.parameters(), SketchStudent(widths=(8, 16), blocks=(0, 1)).parameters())) > 0


@pytest.mark.parametrize("flags, said", [
    (["--batch", "0"], "batch must be at least 1, not 0"), (["--steps", "0"], "steps must be at least 1"),
    (["--crop", "0"], "crop must be at least 16 px"), (["--lr", "-1"], "lr must be above 0"),
    (["--save-every", "0"], "save-every must be at least 1"), (["--minutes", "-1"], "must not be negative"),
    (["--widths", "8"], "must have the same, non-zero length"), (["--widths", "a,b"], "'a,b' is not a comma"),
    (["--sizes", "10xq"], "Size '10xq' is not native"),
])
def test_cli_refuses_bad_settings_before_the_teacher_runs(flags, said, tmp_path, photo_folder, capsys):
    assert distill.main(["--photos", str(photo_folder), "--teacher", "xdog", "--cache", str(tmp_path / "c"),
                         "--run-dir", str(tmp_path / "r"), *flags]) == 2
    assert said in capsys.readouterr().err and not (tmp_path / "c").exists()


def test_cli_says_what_is_wrong(tmp_path, photo_folder, capsys):
    empty = tmp_path / "e"
    empty.mkdir()
    assert distill.main(["--photos", str(empty), "--cache", str(tmp_path / "c")]) == 2
    assert "error: No usable photos" in capsys.readouterr().err
    assert distill.main(["--photos", str(photo_folder), "--teacher", "nope", "--cache", str(tmp_path / "c")]) == 2
    assert "error: Unknown teacher 'nope'" in capsys.readouterr().err
    assert distill.main(["--photos", str(photo_folder), "--sizes", "8x8", "--cache", str(tmp_path / "c")]) == 2
    assert "too small" in capsys.readouterr().err


def test_mirror_teacher_caches_the_mean_of_the_photo_and_its_mirror(photo_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(distill, "make_teacher", lambda name: leftish)
    common = ["--photos", str(photo_folder), "--teacher", "leftish", "--sizes", "native"]
    assert distill.main([*common, "--cache", str(tmp_path / "plain")]) == 0
    assert distill.main([*common, "--mirror-teacher", "--cache", str(tmp_path / "mirrored")]) == 0
    keys = distill.cached_pairs(tmp_path / "mirrored")
    assert len(keys) == 3
    for key in keys:
        red = np.asarray(Image.open(tmp_path / "mirrored" / f"{key}.photo.png"), dtype=np.float32)[..., 0] / 255
        ink, plain = (np.asarray(Image.open(tmp_path / c / f"{key}.ink.png"), dtype=np.float32) / 255
                      for c in ("mirrored", "plain"))
        assert np.abs(ink - (red / 2 + 0.25)).max() <= 0.5 / 255 + 1e-6  # the ramp and its mirror average to 0.25
        assert np.abs(plain - ink).max() > 0.2  # without the flag the ramp stays


def test_init_from_warm_starts_a_new_run_from_an_export(photo_folder, tmp_path, capsys):
    common = ["--photos", str(photo_folder), "--teacher", "xdog", "--cache", str(tmp_path / "cache"), "--batch", "4",
              "--crop", "32", "--lpips", "0", "--lr", "3e-3", "--threads", "1"]
    first = tmp_path / "first"
    assert distill.main([*common, "--widths", "8,16", "--blocks", "0,1", "--steps", "40", "--run-dir",
                         str(tmp_path / "run1"), "--out", str(first)]) == 0
    # the new run starts from the export's weights and architecture (no --widths given), not from random ones
    model, cfg = distill.initial_student(tmp_path / "fresh", distill.TrainConfig(init_from=str(first)))
    assert (cfg.widths, cfg.blocks) == ((8, 16), (0, 1))
    for a, b in zip(model.parameters(), load_student(first).parameters()):
        assert a.requires_grad and torch.equal(a, b)
    assert distill.main([*common, "--init-from", str(first), "--steps", "3", "--run-dir", str(tmp_path / "run2"),
                         "--out", str(tmp_path / "second")]) == 0
    run1, run2 = (json.loads((tmp_path / r / "state.json").read_text()) for r in ("run1", "run2"))
    assert run2["step"] == 3 and run2["config"]["init_from"] == str(first)  # a fresh schedule: steps count from 0
    assert run2["history"][0]["loss"] < 0.8 * run1["history"][0]["loss"]  # it begins where the first run ended
    rec = json.loads((tmp_path / "second" / "training.json").read_text())
    assert rec["warm_start"]["from"] == str(first) and rec["warm_start"]["steps"] == 40
    # --widths with --init-from widens the saved student: it starts computing what the narrow one did
    assert distill.main([*common, "--init-from", str(first), "--widths", "12,24", "--steps", "3", "--run-dir",
                         str(tmp_path / "run3"), "--out", str(tmp_path / "wide")]) == 0
    run3 = json.loads((tmp_path / "run3" / "state.json").read_text())
    assert run3["config"]["widths"] == [12, 24] and run3["history"][0]["loss"] < 0.8 * run1["history"][0]["loss"]
    rec = json.loads((tmp_path / "wide" / "training.json").read_text())
    assert rec["warm_start"]["widened_to"] == [12, 24] and load_student(tmp_path / "wide").config.widths == [12, 24]
    # --blocks with --init-from deepens it the same way
    assert distill.main([*common, "--init-from", str(first), "--blocks", "1,2", "--steps", "3", "--run-dir",
                         str(tmp_path / "run4"), "--out", str(tmp_path / "deep")]) == 0
    run4 = json.loads((tmp_path / "run4" / "state.json").read_text())
    assert run4["config"]["blocks"] == [1, 2] and run4["history"][0]["loss"] < 0.8 * run1["history"][0]["loss"]
    rec = json.loads((tmp_path / "deep" / "training.json").read_text())
    assert rec["warm_start"]["deepened_to"] == [1, 2] and load_student(tmp_path / "deep").config.blocks == [1, 2]
    capsys.readouterr()
    assert distill.main([*common, "--init-from", str(first), "--blocks", "0,0", "--run-dir", str(tmp_path / "r")]) == 2
    assert "each at least the old one" in capsys.readouterr().err
    assert distill.main([*common, "--init-from", str(first), "--widths", "4,16", "--run-dir", str(tmp_path / "r")]) == 2
    assert "at least the old one" in capsys.readouterr().err
    assert distill.main([*common, "--init-from", str(photo_folder), "--run-dir", str(tmp_path / "r")]) == 2
    assert "not a student folder" in capsys.readouterr().err


def test_widening_keeps_the_function_and_gives_the_copies_their_own_gradients():
    torch.manual_seed(0)
    narrow = SketchStudent(widths=(8, 16, 24), blocks=(0, 1, 2), head=8)
    for p in narrow.parameters():  # residual branches start at zero: make every layer count
        p.data.normal_(0, 0.2)
    wide = widen(narrow, (12, 16, 40), seed=3)
    x = torch.rand(2, 3, 40, 56)
    assert wide.config.widths == (12, 16, 40) and n_params(wide) > n_params(narrow)
    torch.testing.assert_close(wide(x), narrow(x), atol=1e-4, rtol=0)  # float sums in another order
    (wide(x) - 0.5).square().mean().backward()
    w, grad = wide.downs[2].weight, wide.downs[2].weight.grad
    copies = [(j, next(o for o in range(24) if torch.equal(w[j], w[o]))) for j in range(24, 40)]
    assert all(not torch.allclose(grad[j], grad[o]) for j, o in copies)  # so a copy drifts from its original
    with pytest.raises(BadInputError, match="at least the old one"):
        widen(narrow, (4, 16, 40))


def test_deepening_keeps_the_function_and_trains_the_new_blocks():
    torch.manual_seed(0)
    shallow = SketchStudent(widths=(8, 16, 24), blocks=(0, 1, 2), head=8)
    for p in shallow.parameters():  # residual branches start at zero: make every layer count
        p.data.normal_(0, 0.2)
    deep = deepen(shallow, (1, 1, 4))
    x = torch.rand(2, 3, 40, 56)
    assert deep.config.blocks == (1, 1, 4) and n_params(deep) > n_params(shallow)
    torch.testing.assert_close(deep(x), shallow(x), atol=0, rtol=0)  # the new blocks pass their input through
    (deep(x) - 0.5).square().mean().backward()
    assert deep.stages[2][3].conv2.weight.grad.abs().sum() > 0  # so they start learning at once
    with pytest.raises(BadInputError, match="at least the old one"):
        deepen(shallow, (0, 1, 1))
    with pytest.raises(BadInputError, match="one block count per level"):
        deepen(shallow, (0, 1))


@pytest.mark.skipif(fast.needs() is not None, reason="shipped student not present")
def test_shipped_student_is_the_fast_extractor(shapes_image):
    assert needs("fast") is None and "fast" in ready_methods()
    model = fast.load()
    assert n_params(model) < 3_000_000
    rec = json.loads((fast.CHECKPOINT / "training.json").read_text())
    assert rec["teacher"] == "hed" and rec["steps"] > 100
    sketch = extract_sketch(shapes_image, "fast").image
    assert sketch.size == shapes_image.size
    ink = ink_mask(sketch)
    x0, y0, x1, y1 = 30, 25, 70, 65  # the black square: its outline is drawn, the paper far from it is not
    assert ink[y0 - 2:y0 + 3, x0 + 5:x1 - 5].mean() > 0.5 and ink[y1 - 2:y1 + 3, x0 + 5:x1 - 5].mean() > 0.5
    assert ink[80:, :20].mean() < 0.05


def test_fast_needs_its_checkpoint(tmp_path):
    assert "checkpoint is missing" in fast.needs(tmp_path)


def test_style_student_attaches_and_a_wrong_shape_is_refused(tmp_path):
    good = tmp_path / "good"
    SketchStudent(**TINY).save_pretrained(str(good), safe_serialization=True)
    style = tmp_path / "style"
    style.mkdir()
    assert style_student(style) is None
    attach_student(style, good)
    assert n_params(style_student(style)) == n_params(SketchStudent(**TINY))
    wrong = tmp_path / "wrong"
    SketchStudent(**TINY, in_channels=4).save_pretrained(str(wrong), safe_serialization=True)
    with pytest.raises(BadInputError, match="wrong shape"):
        check_student_folder(wrong)
    with pytest.raises(BadInputError, match="wrong shape"):
        attach_student(style, wrong)
    # a config that claims a student but whose weights do not fit it
    liar = tmp_path / "liar"
    SketchStudent(**TINY).save_pretrained(str(liar), safe_serialization=True)
    cfg = json.loads((liar / "config.json").read_text())
    (liar / "config.json").write_text(json.dumps(dict(cfg, widths=[8, 32])))
    with pytest.raises(BadInputError, match="loadable sketch student"):
        attach_student(style, liar)


# ---- the app: Classic's default, Photo -> Sketch's Fast switch, the Style tab's Distil step, style zips


@pytest.mark.skipif(fast.needs() is not None, reason="shipped student not present")
def test_classic_opens_on_fast_when_no_other_weights(tmp_path, monkeypatch, shapes_image):
    from ui import classic

    monkeypatch.setenv("DIFFSKETCH_WEIGHTS_DIR", str(tmp_path))  # a fresh machine: no HED, no PiDiNet
    choices, default = classic.method_choices()
    assert default == "fast" and ("Fast (HED student, under 0.5 s)", "fast") in choices
    shapes_image.save(tmp_path / "p.png")
    shown, _, info = classic.classic_sketch(uploaded(tmp_path / "p.png"), "fast", req("fresh"))
    assert Image.open(shown).size == shapes_image.size and info.startswith("Fast")


def test_style_zip_carries_its_student_and_a_wrong_shape_is_refused(tmp_path):
    from diffsketch_core.style.archive import pack_style, unpack_style

    style = tmp_path / "style"
    style.mkdir()
    (style / "style.json").write_text("{}")
    (style / "config.json").write_text("{}")
    good = tmp_path / "good"
    SketchStudent(**TINY).save_pretrained(str(good), safe_serialization=True)
    attach_student(style, good)
    back = unpack_style(pack_style(style, tmp_path / "s.zip"), tmp_path / "back")
    assert n_params(style_student(back)) == n_params(SketchStudent(**TINY))
    wrong = style / "student"
    SketchStudent(**TINY, out_channels=3).save_pretrained(str(wrong), safe_serialization=True)
    with pytest.raises(BadInputError, match="wrong shape"):
        unpack_style(pack_style(style, tmp_path / "w.zip"), tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


@pytest.fixture(scope="module")
def demo_style(tmp_path_factory):
    """A 2-iteration style on the demo backbone and three uploaded photos; each test gets its own copy."""
    from ui import style as style_tab

    d = tmp_path_factory.mktemp("demo")
    photos = []
    for i in range(3):
        _photo(i, (96, 80)).save(d / f"p{i}.png")
        photos.append(uploaded(d / f"p{i}.png"))
    sketch = Image.new("L", (96, 80), 255)
    ImageDraw.Draw(sketch).rectangle([20, 20, 60, 60], outline=0, width=2)
    sketch.save(d / "s.png")
    trained = list(style_tab.train_style(photos[0], uploaded(d / "s.png"), "boxes", 2, "tiny", req("demo")))
    return trained[-1][4], photos


def _copy_style(demo_style, tmp_path):
    import shutil

    return str(shutil.copytree(demo_style[0], tmp_path / "style")), demo_style[1]


def test_distil_a_demo_style_and_use_its_student_in_photo_to_sketch(demo_style, tmp_path):
    import gradio as gr

    from ui import photo, style as style_tab

    style_dir, photos = _copy_style(demo_style, tmp_path)
    with pytest.raises(gr.Error, match="no student yet"):
        photo.photos_to_sketches(photos[:1], "Same as photo", 0, 0, False, style_dir, None, req("dis"), fast=True)
    assert "3 photo(s)" in style_tab.distil_estimate(photos, 10)
    outs = list(style_tab.distil_style(photos, 10, style_dir, "tiny", req("dis")))
    assert any("Style sketches of the photos: 1/3" in o[0] for o in outs)
    assert any("Training the student: step" in o[0] and "s left" in o[0] for o in outs)
    status, zipped, state = outs[-1]
    assert status.startswith("Student ready after 10 steps") and state == style_dir
    import zipfile

    assert "student/diffusion_pytorch_model.safetensors" in zipfile.ZipFile(zipped).namelist()
    # Fast switch: the style's student, no backbone loaded (source None)
    gallery, _, note = photo.photos_to_sketches(photos, "Same as photo", 0, 0, False, style_dir, None,
                                                req("dis"), fast=True)
    assert len(gallery) == 3 and Image.open(gallery[0]).size == (96, 80)
    mirrored, _, _ = photo.photos_to_sketches(photos[:1], "Same as photo", 0, 0, False, style_dir, None,
                                              req("dis"), fast=True, mirror=True)
    assert Image.open(mirrored[0]).size == (96, 80)
    with pytest.raises(gr.Error):  # without the switch the backbone is still required
        photo.photos_to_sketches(photos, "Same as photo", 0, 0, False, style_dir, None, req("dis"))


def test_distil_stop_keeps_no_half_student(demo_style, tmp_path):
    from ui import style as style_tab
    from ui.common import RUNNING

    style_dir, photos = _copy_style(demo_style, tmp_path)
    gen = style_tab.distil_style(photos[:1], 200, style_dir, "tiny", req("stop"))
    for status, *_ in gen:
        if status.startswith("Training the student"):
            assert style_tab.stop_distil(req("stop")).startswith("Stopping")
    assert status.startswith("Stopped; no student") and not (Path(style_dir) / "student").exists()
    assert "stop/distil" not in RUNNING
