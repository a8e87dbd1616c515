import time

import pytest
import torch

from diffsketch_core import settings
from diffsketch_core.diffusion.backbone import Backbone, load_backbone
from diffsketch_core.errors import MissingWeightsError


def test_tiny_backbone_is_sd_shaped_and_marked_demo(tiny_backbone: Backbone):
    bb = tiny_backbone
    assert bb.is_demo and bb.source == "tiny"
    assert len(bb.unet.up_blocks) == 4 and all(len(b.resnets) == 3 for b in bb.unet.up_blocks)
    assert bb.vae_scale_factor == 8 and bb.resolution == 128
    assert bb.device.type == "cpu" and bb.dtype == torch.float32
    emb = bb.encode_prompt(["a photo of a horse", ""])
    assert emb.shape == (2, 77, bb.unet.config.cross_attention_dim)
    assert not torch.equal(emb[0], emb[1])


def test_tiny_backbone_is_deterministic(tiny_backbone):
    again = load_backbone("tiny", device="cpu")
    for a, b in zip(tiny_backbone.unet.parameters(), again.unet.parameters()):
        assert torch.equal(a, b)


def test_scheduler_uses_diffsketch_ddim_grid(tiny_backbone):
    sched = tiny_backbone.scheduler
    sched.set_timesteps(50)
    assert [int(t) for t in sched.timesteps][:3] == [981, 961, 941]
    assert int(sched.timesteps[-1]) == 1


def test_missing_hub_model_offline_fails_fast_with_guidance(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(MissingWeightsError) as err:
        load_backbone("CompVis/stable-diffusion-v1-4", device="cpu")
    assert time.perf_counter() - start < 10
    msg = str(err.value)
    assert settings.SD_MODEL_ENV in msg and "CompVis/stable-diffusion-v1-4" in msg and "tiny" in msg


def test_default_source_comes_from_env(monkeypatch):
    monkeypatch.setenv(settings.SD_MODEL_ENV, "someone/not-a-real-model")
    with pytest.raises(MissingWeightsError, match="someone/not-a-real-model"):
        load_backbone(device="cpu")


def test_local_dir_that_is_not_sd_is_refused(tmp_path):
    with pytest.raises(MissingWeightsError, match="unet/"):
        load_backbone(str(tmp_path), device="cpu")


def test_gibberish_source_is_refused():
    with pytest.raises(MissingWeightsError, match="neither a local directory nor a hub id"):
        load_backbone("no such thing", device="cpu")
