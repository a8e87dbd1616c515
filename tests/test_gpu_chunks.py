"""ZeroGPU fit of the Style tab: a training split into short GPU calls, each asking for the seconds it needs,
the trainer's state carried between them, Stop honoured between and inside calls; the polarity guess shown."""

import pytest
from PIL import Image, ImageDraw

from conftest import requires_shared
from diffsketch_core.style.training import CHUNK_SECONDS, TrainConfig, iteration_seconds, plan_chunks
from test_app import req, uploaded
from ui import style


def test_chunk_plan_covers_the_run_in_short_calls():
    plan = plan_chunks(1200, per_iteration=1.5, multiple=4)
    assert sum(plan.chunks) == 1200 and len(plan.chunks) > 1
    assert all(n % 4 == 0 for n in plan.chunks) and max(plan.seconds) <= CHUNK_SECONDS
    assert plan.total_seconds == sum(plan.seconds) > 1200 * 1.5
    slow = plan_chunks(3, per_iteration=500.0)  # one iteration that cannot fit a short call asks for what it needs
    assert slow.chunks == [1, 1, 1] and min(slow.seconds) > 500


def test_estimate_grows_with_the_work():
    cfg = TrainConfig()
    assert iteration_seconds(cfg, 512) > iteration_seconds(TrainConfig(sample_steps=5), 512)
    assert iteration_seconds(cfg, 512) == pytest.approx(4 * iteration_seconds(cfg, 256))
    # SDXL trains at 1024 px with a UNet 1.91x SD 1.5's per pixel: the first estimate must not be SD 1.x's
    assert iteration_seconds(cfg, 1024, "sdxl") > 7 * iteration_seconds(cfg, 512, "sd1")
    assert style._cost_shape("tiny-sdxl") == (128, "sdxl")
    short, long = style.gpu_estimate(100, "some/model"), style.gpu_estimate(1200, "some/model")
    seconds = [int(t.split("about ")[1].split(" ")[0]) for t in (short, long)]
    assert "GPU-seconds" in long and seconds[0] < seconds[1]


@pytest.fixture
def pair_files(tmp_path):
    photo = Image.new("RGB", (128, 128), (200, 210, 230))
    ImageDraw.Draw(photo).rectangle([30, 20, 90, 80], fill=(90, 60, 40))
    sketch = Image.new("L", (128, 128), 255)
    ImageDraw.Draw(sketch).rectangle([30, 20, 90, 80], outline=0, width=2)
    photo.save(tmp_path / "photo.png")
    sketch.save(tmp_path / "sketch.png")
    return uploaded(tmp_path / "photo.png"), uploaded(tmp_path / "sketch.png")


@pytest.fixture
def chunked(monkeypatch):
    """ZeroGPU on, a first estimate that fits two iterations per call; records each GPU call's job."""
    monkeypatch.setattr(style, "ZERO_GPU", True)
    monkeypatch.setattr(style, "iteration_seconds", lambda cfg, *shape: 30.0)
    calls = []
    real = style._train_chunk

    def recording(job):
        calls.append(dict(job))
        yield from real(job)

    monkeypatch.setattr(style, "_train_chunk", recording)
    return calls


@requires_shared
def test_chunked_training_carries_its_state_between_gpu_calls(pair_files, chunked):
    outs = list(style.train_style(*pair_files, "a box", 4, "tiny", req("chunks")))
    assert "asks for about" in outs[0][0] and "Training done after 4 iterations" in outs[-1][0]
    assert len(chunked) >= 2 and chunked[0]["state"] is None and chunked[1]["state"]["iteration"] == 2
    assert chunked[0]["until"] == 2 and chunked[0]["seconds"] > 0
    assert "chunks" not in style.TRAINING and "chunks" not in style.RUNNING


@requires_shared
def test_stop_between_gpu_calls_saves_the_style(pair_files, chunked):
    gen = style.train_style(*pair_files, "a box", 40, "tiny", req("chunk-stop"))
    for out in gen:
        if len(chunked) == 2:  # the second call has started: Stop, as the button does
            style.stop_training(req("chunk-stop"))
            break
    last = list(gen)[-1]
    assert "stopped early" in last[0] and last[3].endswith(".zip")


def test_polarity_guess_is_shown_for_an_upload(tmp_path):
    sketch = Image.new("L", (128, 128), 0)
    ImageDraw.Draw(sketch).ellipse([20, 20, 100, 100], outline=255, width=2)
    sketch.save(tmp_path / "chalk.png")
    shown = style.polarity_guess(uploaded(tmp_path / "chalk.png"))
    assert "inverted" in shown and "keep as drawn" in shown
    assert style.polarity_guess(None) == ""


@requires_shared
def test_advanced_panel_techniques_reach_the_style(pair_files):
    import json
    from pathlib import Path

    assert "ControlNet" in style.techniques_status() and "self-q" in style.techniques_status()
    assert style.advanced_techniques("", "", "canny", 0, "") == {}  # off by default
    assert style.advanced_techniques("", "", "canny", 0, "", True, 2) == {"amalgamate": True, "extra_seeds": 2}
    taps = "up_blocks.1.resnets.0:res-out, up_blocks.3.attentions.2:attn-out"
    outs = list(style.train_style(*pair_files, "a box", 2, "tiny", req("advanced"), "auto", taps, "tiny", "canny", 0, ""))
    info = json.loads((Path(outs[-1][4]) / "style.json").read_text())
    assert info["control"] == {"controlnet": "tiny", "image": "canny", "scale": 1.0, "steps": 0}
    config = json.loads((Path(outs[-1][4]) / "config.json").read_text())
    assert set(config["unet_taps"]) == {"up_blocks.1.resnets.0:res-out", "up_blocks.3.attentions.2:attn-out"}
    with pytest.raises(style.gr.Error, match="Unknown tap kind"):
        list(style.train_style(*pair_files, "a box", 2, "tiny", req("advanced"), "auto", "up_blocks.1.resnets.0:x"))


def test_estimate_counts_the_feature_techniques():
    plain = iteration_seconds(TrainConfig(), 512)
    control = iteration_seconds(TrainConfig(controlnet="x"), 512)
    gate = iteration_seconds(TrainConfig(controlnet="x", control_steps=3), 512)
    mixed = iteration_seconds(TrainConfig(controlnet="x", amalgamate=True, extra_seeds=1), 512)
    assert plain < control < gate and control < mixed
