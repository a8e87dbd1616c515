import json
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from diffsketch_core.errors import BadInputError
from diffsketch_core.strokes.diffusion import StrokeDiffusion, sketch_lengths, uniform_timesteps, with_pen
from diffsketch_core.strokes.format import DRAW, END, LIFT, batch_fixed, polylines_to_stroke3
from diffsketch_core.strokes.generate import generate
from diffsketch_core.strokes.loaders import load_stroke_model
from diffsketch_core.strokes.model import StrokeDenoiser

CLASSES = ("circle", "line", "zigzag")


def tiny_model(max_len=24, pen_channel=True):
    torch.manual_seed(0)
    return StrokeDenoiser(max_len=max_len, d_model=32, n_layers=2, n_heads=2, class_names=CLASSES, offset_scale=10.0,
                          pen_channel=pen_channel)


def toy_batch(max_len=24):
    t = np.linspace(0, 2 * np.pi, 12)
    shapes = [polylines_to_stroke3([np.column_stack([20 * np.cos(t), 20 * np.sin(t)])]),
              polylines_to_stroke3([np.array([[0, 0], [40, 0]]), np.array([[0, 10], [40, 10]])]),
              polylines_to_stroke3([np.array([[0, 0], [10, 10], [20, 0], [30, 10], [40, 0]])])]
    b = batch_fixed(shapes * 4, max_len, 10.0)
    return torch.from_numpy(b.offsets), torch.from_numpy(b.pen), torch.tensor([0, 1, 2] * 4)


@pytest.mark.parametrize("pen_channel, c", [(True, 3), (False, 2)])
def test_forward_shapes_and_length_flexibility(pen_channel, c):
    m = tiny_model(pen_channel=pen_channel)
    assert m.channels == c
    for n in (24, 10):
        eps, logits = m(torch.randn(3, n, c), torch.tensor([0, 500, 999]), torch.tensor([0, 1, 3]))
        assert eps.shape == (3, n, c) and logits.shape == (3, n, 3)


def test_pen_signal_is_up_for_lift_and_end_and_down_for_draw():
    pen = torch.tensor([[DRAW, DRAW, LIFT, DRAW, LIFT, END]])
    x0 = with_pen(tiny_model(), torch.zeros(1, 6, 2), pen)
    assert x0.shape == (1, 6, 3) and x0[0, :, 2].tolist() == [-1, -1, 1, -1, 1, 1]
    assert with_pen(tiny_model(pen_channel=False), torch.zeros(1, 6, 2), pen).shape == (1, 6, 2)


def test_warm_start_adds_the_pen_channel_without_changing_the_network():
    from diffsketch_core.strokes.train import warm_start

    old = tiny_model(pen_channel=False)
    with torch.no_grad():
        for p in old.parameters():
            p.add_(0.1 * torch.randn_like(p))  # zero-initialised heads would make the check trivial
    new = warm_start(old, pen_channel=True)
    x, t, y = torch.randn(2, 24, 2), torch.tensor([5, 600]), torch.tensor([0, 3])
    eps_old, logits_old = old(x, t, y)
    eps_new, logits_new = new(torch.cat([x, torch.randn(2, 24, 1)], -1), t, y)
    torch.testing.assert_close(eps_new[..., :2], eps_old)
    torch.testing.assert_close(logits_new, logits_old)


def test_a_few_training_steps_lower_the_loss():
    m, diff = tiny_model(), StrokeDiffusion()
    offsets, pen, labels = toy_batch()
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)

    def loss_at(seed):
        with torch.no_grad():
            return float(diff.training_loss(m, offsets, pen, labels, generator=torch.Generator().manual_seed(seed))["loss"])

    before = np.mean([loss_at(s) for s in range(5)])
    gen = torch.Generator().manual_seed(0)
    for _ in range(60):
        out = diff.training_loss(m, offsets, pen, labels, generator=gen)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    after = np.mean([loss_at(s) for s in range(5)])
    assert after < 0.8 * before


@pytest.mark.parametrize("method, steps", [("ddim", 30), ("ddpm", 1000)])
def test_samplers_return_requested_count_and_finite_values(method, steps):
    m, diff = tiny_model(), StrokeDiffusion()
    schedule = uniform_timesteps(steps) if method == "ddim" else list(range(999, -1, -1))
    res = diff.sample(m, torch.tensor([0, 1, 3, 3, 2]), schedule, method=method, guidance=2.0, seed=1)
    assert res.offsets.shape == (5, 24, 2) and torch.isfinite(res.offsets).all()
    assert res.nfe == steps and res.pen.shape == (5, 24)


def test_guidance_interval_guides_only_inside_it():
    m, diff = tiny_model(), StrokeDiffusion()
    for p in m.parameters():  # the zero-initialised heads would make guidance a no-op
        torch.nn.init.normal_(p, std=0.1)
    unconditional = []  # the timesteps at which the unconditional branch ran, and for how many rows
    m.register_forward_hook(lambda mod, args, out: unconditional.append((int(args[1][0]), len(args[0])))
                            if bool((args[2] == mod.null_class).all()) else None)
    labels = torch.tensor([0, 1, m.null_class])  # the last row asks for no class: nothing to guide
    limited = diff.sample(m, labels, [999, 700, 400, 100, 0], guidance=3.0, guidance_interval=(250, 750), seed=0)
    assert unconditional == [(700, 2), (400, 2)]
    unconditional.clear()
    full = diff.sample(m, labels, [999, 700, 400, 100, 0], guidance=3.0, seed=0)
    assert unconditional == [(t, 2) for t in (999, 700, 400, 100, 0)] and limited.nfe == full.nfe == 5
    assert not torch.allclose(limited.offsets, full.offsets)


def test_exact_gelu_matches_the_tanh_approximation_closely():
    tanh = tiny_model()
    for p in tanh.parameters():
        torch.nn.init.normal_(p, std=0.1)
    exact = StrokeDenoiser(**{**tanh.config, "gelu_approximate": "none"})
    exact.load_state_dict(tanh.state_dict())
    x, t, labels = torch.randn(2, 24, 3), torch.tensor([10, 900]), torch.tensor([0, 1])
    with torch.no_grad():
        (ea, pa), (eb, pb) = tanh(x, t, labels), exact(x, t, labels)
    assert not torch.equal(ea, eb) and torch.allclose(ea, eb, atol=1e-3) and torch.allclose(pa, pb, atol=1e-3)


def test_sampling_is_deterministic_for_a_seed():
    m, diff = tiny_model(), StrokeDiffusion()
    a = diff.sample(m, torch.tensor([0, 1]), uniform_timesteps(10), seed=3)
    b = diff.sample(m, torch.tensor([0, 1]), uniform_timesteps(10), seed=3)
    c = diff.sample(m, torch.tensor([0, 1]), uniform_timesteps(10), seed=4)
    assert torch.equal(a.offsets, b.offsets) and not torch.equal(a.offsets, c.offsets)


def test_uniform_timesteps():
    ts = uniform_timesteps(30)
    assert len(ts) == 30 and ts[0] == 999 and ts[-1] == 0 and ts == sorted(ts, reverse=True)


def test_ddim_recovers_clean_data_with_perfect_noise_prediction():
    """With the true eps, one DDIM jump from any t lands exactly on x0 (checks the update algebra)."""
    diff = StrokeDiffusion()
    x0, noise = torch.randn(2, 8, 2), torch.randn(2, 8, 2)
    xt = diff.q_sample(x0, torch.tensor([700, 700]), noise)
    torch.testing.assert_close(diff.ddim_step(xt, 700, -1, noise), x0, atol=1e-4, rtol=1e-4)


def test_ddim_next_is_ddim_at_eta_0_and_has_the_ddpm_variance_at_eta_1():
    diff = StrokeDiffusion()
    x0, eps, noise = torch.randn(2, 8, 3), torch.randn(2, 8, 3), torch.randn(2, 8, 3)
    t, t_next = torch.tensor([700, 700]), torch.tensor([699, 699])
    ab, ab_prev, beta = diff._ab(t)[0], diff._ab(t_next)[0], diff.betas[700]
    # eta 0: the deterministic DDIM update, written out (ddim_step itself calls ddim_next)
    torch.testing.assert_close(diff.ddim_next(x0, eps, t, t_next, 0.0, noise), ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps)
    added = diff.ddim_next(x0, eps, t, t_next, 1.0, noise) - diff.ddim_next(x0, eps, t, t_next, 1.0)
    torch.testing.assert_close(added, (beta * (1 - ab_prev) / (1 - ab)).sqrt() * noise)
    per_row = diff.ddim_next(x0, eps, t, t_next, torch.tensor([0.0, 1.0]), noise)  # eta per row
    torch.testing.assert_close(per_row[0], diff.ddim_next(x0, eps, t, t_next, 0.0)[0])


def test_sketch_lengths_ends_at_the_final_end_run():
    pen = torch.tensor([[0, 1, END, END], [0, 0, LIFT, 0], [END, 0, LIFT, END], [END, END, END, END]])
    assert sketch_lengths(pen).tolist() == [2, 4, 3, 0]


def test_save_load_fp16_round_trip(tmp_path):
    from diffsketch_core.checkpoints import save_fp16

    m = tiny_model()
    save_fp16(m, tmp_path / "m")
    loaded = load_stroke_model(tmp_path / "m")
    assert loaded.config.class_names == list(CLASSES) or tuple(loaded.config.class_names) == CLASSES
    x, t, y = torch.randn(1, 24, 3), torch.tensor([10]), torch.tensor([1])
    assert loaded.config.pen_channel
    torch.testing.assert_close(loaded(x, t, y)[1], m(x, t, y)[1], atol=2e-2, rtol=2e-2)
    assert (tmp_path / "m" / "diffusion_pytorch_model.safetensors").is_file()


def test_another_models_folder_is_refused_not_half_loaded(tmp_path):
    from diffsketch_core.checkpoints import save_fp16
    from diffsketch_core.errors import DiffSketchError
    from diffsketch_core.strokes.classifier import SketchClassifier, load_classifier

    save_fp16(SketchClassifier(class_names=CLASSES, image_size=32, widths=(8, 8, 8), feature_dim=16), tmp_path / "c")
    with pytest.raises(DiffSketchError, match="holds a SketchClassifier, not a StrokeDenoiser"):
        load_stroke_model(tmp_path / "c")
    save_fp16(tiny_model(), tmp_path / "m")
    with pytest.raises(DiffSketchError, match="not a sketch-classifier checkpoint"):
        load_classifier(tmp_path / "m")
    pickled = tmp_path / "pickled"  # weights only as a pickle: never unpickled (torch.load runs code)
    pickled.mkdir()
    (pickled / "config.json").write_text((tmp_path / "m" / "config.json").read_text())
    torch.save(tiny_model().state_dict(), pickled / "diffusion_pytorch_model.bin")
    with pytest.raises(DiffSketchError, match="not a stroke-diffusion checkpoint"):
        load_stroke_model(pickled)
    (tmp_path / "m" / "config.json").write_text("not json")
    with pytest.raises(DiffSketchError, match="config.json is unreadable"):
        load_stroke_model(tmp_path / "m")


@pytest.mark.parametrize("flags, said", [
    (["--batch", "0"], "argument --batch: must be at least 1, got 0"), (["--lr", "-1"], "--lr: must be above 0"),
    (["--ema", "1.5"], "--ema: must be from 0 to 1"), (["--permute", "1.5"], "--permute: must be from 0 to 1"),
    (["--max-len", "1"], "--max-len: must be at least 8"),
    (["--d-model", "30", "--heads", "4"], "--d-model (30) must be a multiple of --heads (4)"),
])
def test_train_cli_refuses_bad_settings_before_loading_data(flags, said, tmp_path, capsys):
    from diffsketch_core.strokes import train

    assert train.main(["--run", str(tmp_path / "run"), *flags]) == 2
    assert "error: " in (err := capsys.readouterr().err) and said in err and not (tmp_path / "run").exists()


def test_train_cli_says_a_foreign_warm_start(tmp_path, capsys):
    from diffsketch_core.strokes import train

    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "config.json").write_text('{"_class_name": "UNet2DModel"}')
    assert train.main(["--run", str(tmp_path / "run"), "--out", str(tmp_path / "o"), "--init-from",
                       str(tmp_path / "x"), "--max-steps", "1"]) == 2
    assert "not a stroke-diffusion checkpoint (it holds a UNet2DModel" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, match", [
    (dict(class_name="unicorn"), "Unknown class 'unicorn'.*circle, line, zigzag"),
    (dict(n=0), "between 1 and"), (dict(n=10**6), "between 1 and"), (dict(sampler="magic"), "Unknown sampler"),
])
def test_generate_refuses_bad_requests(kwargs, match):
    with pytest.raises(BadInputError, match=match):
        generate(model=tiny_model(), **kwargs)


def test_generate_with_tiny_model():
    gen = generate("zigzag", n=3, sampler="ddim", steps=8, model=tiny_model())
    assert len(gen.sketches) == 3 and gen.nfe == 8 and gen.class_names == ["zigzag"] * 3
    assert all(s.shape[1] == 3 and np.isfinite(s).all() for s in gen.sketches)


def test_generate_a_list_of_classes_in_one_batch():
    gen = generate(["circle", None, "zigzag"], sampler="ddim", steps=4, model=tiny_model())
    assert gen.class_names == ["circle", None, "zigzag"] and len(gen.sketches) == 3


def test_training_cli_resumes_and_exports_fp16_with_exact_gelu(tmp_path):
    from diffsketch_core.strokes.train import main

    args = ["--run", str(tmp_path / "run"), "--out", str(tmp_path / "out"), "--classifier", str(tmp_path / "none"),
            "--d-model", "32", "--layers", "1", "--heads", "2", "--no-pen-channel"]
    assert main([*args, "--max-steps", "2", "--eval-every", "1"]) == 0
    assert main([*args, "--max-steps", "4"]) == 0  # the same run again continues from step 2
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["step"] == 4 and not state["config"]["pen_channel"]
    assert StrokeDenoiser.from_pretrained(str(tmp_path / "out")).config.gelu_approximate == "none"
    weights = load_file(str(tmp_path / "out" / "diffusion_pytorch_model.safetensors"))
    assert {v.dtype for v in weights.values()} == {torch.float16}
    report = json.loads((tmp_path / "out" / "training.json").read_text())
    assert report["steps"] == 4 and [r["step"] for r in report["history"]] == [1, 2]  # the log survives the resume


def _segments(s):
    """The drawing as a set of undirected segments, up to translation (what augmentation must not change)."""
    from diffsketch_core.strokes.format import stroke3_to_polylines
    polys = stroke3_to_polylines(s)
    lo = np.concatenate(polys).min(0)
    return {frozenset(map(tuple, np.round(p[k:k + 2] - lo, 3))) for p in polys for k in range(len(p) - 1)}


def test_reorder_changes_the_sequence_not_the_drawing():
    from diffsketch_core.strokes.train import reorder
    s = polylines_to_stroke3([np.array([[0, 0], [10, 0], [10, 5]]), np.array([[20, 20], [30, 25]]),
                              np.array([[-5, 3], [-5, 9], [0, 12]])])
    s[:, :2] -= np.r_[s[:1, :2], np.zeros((len(s) - 1, 2))]  # first point at the origin, as in the data
    rng = np.random.default_rng(0)
    outs = [reorder(s, rng, permute=1.0, reverse=0.5) for _ in range(8)]
    assert all(_segments(o) == _segments(s) and len(o) == len(s) and (o[0, :2] == 0).all() for o in outs)
    assert any(not np.array_equal(o, s) for o in outs)  # the sequences do change
    assert np.array_equal(reorder(s, rng), s)  # no augmentation asked, none done


def test_length_buckets_are_equal_sized_groups_of_similar_length():
    from diffsketch_core.strokes.train import length_buckets
    lengths = np.random.default_rng(0).integers(5, 96, 100)
    buckets = length_buckets(lengths, 4)
    assert [len(b) for b in buckets] == [25] * 4 and sorted(np.concatenate(buckets)) == list(range(100))
    assert all(lengths[a].max() <= lengths[b].min() for a, b in zip(buckets, buckets[1:]))


def _toy_data(folder):
    from diffsketch_core.strokes.format import save_npz
    rng = np.random.default_rng(0)
    folder.mkdir()
    for name in ("circle", "zigzag"):
        sketches = []
        for _ in range(12):
            n = int(rng.integers(4, 20))
            pts = np.cumsum(rng.normal(0, 10, (n, 2)), 0)
            s = polylines_to_stroke3([pts[: n // 2], pts[n // 2:]])
            s[0, :2] = 0
            sketches.append(np.round(s))
        save_npz(folder / f"{name}.npz", sketches, "train")


def test_training_runs_under_accelerate_with_two_cpu_processes(tmp_path):
    """DDP across 2 CPU processes (gloo): both step together to the end, the main one saves, with every
    augmentation (stroke order, direction, length buckets) switched on."""
    import os
    import socket
    import subprocess
    import sys
    _toy_data(tmp_path / "data")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "DIFFSKETCH_QUICKDRAW_DIR": str(tmp_path / "data"), "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": ""}  # CPU processes even where a GPU is present
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--main_process_port", str(port), "-m", "diffsketch_core.strokes.train", "--run", str(tmp_path / "run"),
           "--out", str(tmp_path / "out"), "--classifier", str(tmp_path / "none"), "--d-model", "32", "--layers", "1",
           "--heads", "2", "--max-len", "24", "--batch", "4", "--max-steps", "3", "--eval-every", "2",
           "--permute", "1", "--reverse", "0.5", "--buckets", "2", "--threads", "1"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "state.json").read_text())["step"] == 3
    report = json.loads((tmp_path / "out" / "training.json").read_text())
    assert report["processes"] == 2 and report["augmentation"] == {"permute": 1.0, "reverse": 0.5, "buckets": 2}
    assert StrokeDenoiser.from_pretrained(str(tmp_path / "out")).config.max_len == 24
