"""Issue 16 part 3 on tiny random models: an IP-Adapter (built here, loaded through diffusers' UNet-level IP-Adapter
loading) conditions the extraction forward on each image's own CLIP embedding, is removed exactly afterwards, and
works end to end inside style training and Photo -> Sketch."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from diffsketch_core.diffusion.features import FeatureExtractor, image_to_tensor
from diffsketch_core.diffusion.ip_adapter import load_ip_adapter, tiny_ip_adapter
from diffsketch_core.errors import MissingWeightsError
from diffsketch_core.perceptual import tiny_clip
from diffsketch_core.style.conditions import fit_prior, read_captions
from diffsketch_core.style.losses import LossWeights
from diffsketch_core.style.photo2sketch import PhotoToSketch
from diffsketch_core.style.store import load_style
from diffsketch_core.style.training import OneShotTrainer, TrainConfig, _to_uint8

TAP = "up_blocks.3.resnets.2"


def _state(unet):
    return ({k: type(v) for k, v in unet.attn_processors.items()}, unet.encoder_hid_proj,
            unet.config.encoder_hid_dim_type)


def test_ip_adapter_changes_the_features_and_is_removed_exactly(tiny_backbone, pair):
    bb, photo = tiny_backbone, pair[0]
    ex = FeatureExtractor(bb, timesteps=(61, 501))
    z0 = ex.encode(image_to_tensor(photo))
    cond, uncond = bb.encode_prompt("a house"), bb.encode_prompt("")
    before = _state(bb.unet)
    plain = ex.unet_features(z0, cond, uncond, seed=3).maps[TAP]
    ip = tiny_ip_adapter(bb.unet)
    other = Image.new("RGB", (64, 64), (20, 160, 40))
    with ip.applied(bb.unet, ip.embed([photo]), rows_per_image=4):
        own = ex.unet_features(z0, cond, uncond, seed=3).maps[TAP]
    with ip.applied(bb.unet, ip.embed([other]), rows_per_image=4):
        theirs = ex.unet_features(z0, cond, uncond, seed=3).maps[TAP]
    assert not torch.allclose(own, plain) and not torch.allclose(own, theirs)  # the image embedding steers it
    assert _state(bb.unet) == before
    torch.testing.assert_close(ex.unet_features(z0, cond, uncond, seed=3).maps[TAP], plain, rtol=0, atol=0)


def test_each_row_gets_its_own_images_embedding_across_chunks(tiny_backbone, pair):
    bb = tiny_backbone
    images = [pair[0], Image.new("RGB", (128, 128), (20, 160, 40))]
    ex = FeatureExtractor(bb, timesteps=(61, 501), max_batch=3)  # chunks of 3 rows cut across the 4 rows per image
    z0 = ex.encode(torch.cat([image_to_tensor(i) for i in images]))
    cond, uncond = bb.encode_prompt("a house"), bb.encode_prompt("")
    noise = torch.randn(2, 2, *z0.shape[1:], generator=torch.Generator().manual_seed(0))
    ip = tiny_ip_adapter(bb.unet)
    with ip.applied(bb.unet, ip.embed(images), rows_per_image=4):
        both = ex.unet_features(z0, cond, uncond, noise=noise).maps[TAP]
    for k in range(2):
        with ip.applied(bb.unet, ip.embed(images[k:k + 1]), rows_per_image=4):
            alone = ex.unet_features(z0[k:k + 1], cond, uncond, noise=noise[k:k + 1]).maps[TAP]
        torch.testing.assert_close(both[k:k + 1], alone, rtol=1e-4, atol=1e-5)


def test_style_with_ip_adapter_trains_and_reproduces_at_inference(tiny_backbone, pair, tmp_path):
    bb, photo = tiny_backbone, pair[0]
    sketch = Image.new("L", (128, 128), 255)
    ImageDraw.Draw(sketch).rectangle([30, 30, 90, 100], outline=0, width=2)
    prior = fit_prior(bb, read_captions()[:40], n_components=8)
    cfg = TrainConfig(sample_steps=2, gen_batch=2, preview_every=100, timesteps=(61, 501), iterations=2, lr=3e-3,
                      weights=LossWeights(lpips=0.0), ip_adapter="tiny", ip_adapter_scale=0.7)
    t = OneShotTrainer(bb, photo, sketch, "a house", cfg, clip=tiny_clip(), lpips_model=None, prior=prior)
    before = t.reconstruction_loss()
    t.run().save(tmp_path / "s")
    assert t.reconstruction_loss() < before
    with torch.no_grad():
        expected = _to_uint8(t.generator.eval()(t.example))
    style = load_style(tmp_path / "s", bb)
    assert style.meta["ip_adapter"] == {"source": "tiny", "scale": 0.7}
    assert style.meta["buckets"][0]["ip_adapter"] == {"source": "tiny", "scale": 0.7}
    assert np.array_equal(np.asarray(PhotoToSketch(style, bb)(photo).sketch), expected)


def test_missing_ip_adapter_says_what_to_set(tiny_backbone, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError, match="--ip-adapter.*advanced panel") as err:
        load_ip_adapter("h94/IP-Adapter", tiny_backbone)
    assert "HF_HUB_OFFLINE" in str(err.value)
    with pytest.raises(MissingWeightsError, match="no ip-adapter_sd15.safetensors"):
        load_ip_adapter(str(tmp_path), tiny_backbone)


def test_ip_adapter_is_a_source_of_its_own_when_amalgamating():
    from diffsketch_core.style.extraction import bucket_specs

    ip = {"source": "tiny", "scale": 1.0}
    assert bucket_specs(None, None, ip_adapter=ip) == [{"control": None, "lora": None, "seed_offset": 0,
                                                        "ip_adapter": ip}]
    assert [b.get("ip_adapter") for b in bucket_specs(None, None, True, 1, ip)] == [None, ip, None]
    assert "ip_adapter" not in bucket_specs(None, None)[0]  # styles without one keep their old records
