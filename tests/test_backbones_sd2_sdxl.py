"""Issue 16 part 6: SD-2.x (v-prediction, 768 native) and SDXL (two text encoders, pooled embedding, time ids)
backbones, on tiny random models built in code (no downloads)."""

import json

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from PIL import Image, ImageDraw

from diffsketch_core import settings
from diffsketch_core.diffusion.backbone import (SD1, SD2, SDXL, SDXL_SHAPED, _unet_config, family_of, load_backbone,
                                                sd_scheduler)
from diffsketch_core.diffusion.controlnet import Control, residuals, tiny_controlnet
from diffsketch_core.diffusion.features import FeatureExtractor, decoder_taps, image_to_tensor
from diffsketch_core.diffusion.sampling import split_prediction
from diffsketch_core.diffusion.taps import KINDS, catalogue, describe
from diffsketch_core.errors import BadInputError, MissingWeightsError
from diffsketch_core.perceptual import tiny_clip
from diffsketch_core.style.conditions import fit_prior, read_captions
from diffsketch_core.style.generator import generator_for
from diffsketch_core.style.losses import LossWeights
from diffsketch_core.style.photo2sketch import PhotoToSketch
from diffsketch_core.style.store import Style, load_style
from diffsketch_core.style.training import OneShotTrainer, TrainConfig, _to_uint8

FAST = dict(sample_steps=2, gen_batch=2, preview_every=100, timesteps=(61, 501), weights=LossWeights(lpips=0.0))


@pytest.fixture(scope="module")
def sd2():
    return load_backbone("tiny-sd2", device="cpu")


@pytest.fixture(scope="module")
def sdxl():
    return load_backbone("tiny-sdxl", device="cpu")


def _inputs(bb, photo):
    return image_to_tensor(photo, (bb.resolution, bb.resolution)), bb.encode_prompt("a house"), bb.encode_prompt("")


# ------------------------------------------------------------------ SD 2.x

def test_tiny_sd2_is_shaped_like_sd2(sd2):
    cfg = sd2.unet.config
    assert sd2.family == SD2 and sd2.prediction_type == "v_prediction" and sd2.is_demo
    assert cfg.use_linear_projection and cfg.upcast_attention
    heads = [b.attentions[0].transformer_blocks[0].attn1.heads for b in sd2.unet.down_blocks[:3]]
    assert heads == [1, 2, 4]  # heads per block, as SD 2.x's attention_head_dim (5, 10, 20, 20)
    assert sd2.resolution == cfg.sample_size * sd2.vae_scale_factor == 192  # native size read from the config
    assert sd2.encode_prompt("a cat").shape == (1, 77, 24)


def test_v_prediction_gives_back_the_known_x0():
    sched = sd_scheduler({"prediction_type": "v_prediction"})
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 4, 8, 8, generator=gen), torch.randn(3, 4, 8, 8, generator=gen)
    t = torch.tensor([1, 261, 941])
    x_t, v = sched.add_noise(x0, eps, t), sched.get_velocity(x0, eps, t)
    a = sched.alphas_cumprod[t].view(-1, 1, 1, 1)
    got_x0, got_eps = split_prediction(v, x_t, a, "v_prediction")
    assert torch.allclose(got_x0, x0, atol=1e-5) and torch.allclose(got_eps, eps, atol=1e-4)
    wrong, _ = split_prediction(v, x_t, a, "epsilon")  # reading v as epsilon is far off
    assert (wrong - x0).abs().mean() > 0.1
    assert torch.allclose(split_prediction(eps, x_t, a, "epsilon")[0], x0, atol=1e-4)


def test_gate_step_on_sd2_matches_diffusers_ddim_with_v_prediction(sd2):
    """The extraction's guided step t -> t - 1 equals diffusers' DDIM step (v-prediction) of the same UNet output."""
    control = Control(tiny_controlnet(sd2.unet), "tiny", steps=1)
    ex = FeatureExtractor(sd2, timesteps=(500,), control=control)
    x = torch.randn(1, 4, 24, 24, generator=torch.Generator().manual_seed(1))
    emb, t = sd2.encode_prompt("a house"), torch.tensor([501])
    image = torch.rand(1, 3, 192, 192, generator=torch.Generator().manual_seed(2))
    ours = ex._guided_step(x, emb, t, image)
    with torch.no_grad():
        v = sd2.unet(x, t, encoder_hidden_states=emb, **residuals(control, x, t, {"encoder_hidden_states": emb}, image)).sample
    sched = sd_scheduler(dict(sd2.scheduler.config))
    sched.set_timesteps(1000)  # one-timestep DDIM steps
    expected = sched.step(v, 501, x, eta=0.0).prev_sample
    assert torch.allclose(ours, expected, atol=1e-5)


def test_sketch_to_picture_on_sd2_denoises_as_diffusers_ddim_does(sd2):
    """Sketch -> Picture's own DDIM loop reads the UNet output as v on SD 2: the same picture as diffusers' step."""
    from diffusers import DDIMScheduler

    from diffsketch_core.diffusion.sampling import initial_noise
    from diffsketch_core.picture.sketch2image import PictureConfig, sketch_to_image

    got = sketch_to_image(sd2, _sketch(), PictureConfig("a box", steps=2, cfg=1.0, seed=3)).images[0]
    sched = DDIMScheduler.from_config(sd2.scheduler.config)
    sched.set_timesteps(2)
    x, emb = initial_noise((1, 4, 24, 24), 3, sd2.device, sd2.dtype), sd2.encode_prompt("a box")
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(sd2.unet(x, t, encoder_hidden_states=emb).sample, t, x, eta=0.0).prev_sample
        rgb = ((sd2.vae.decode(x / sd2.scaling_factor).sample + 1) / 2).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    assert np.abs(np.asarray(got, dtype=np.int16) - np.round(rgb * 255).astype(np.int16)).max() <= 1


# ------------------------------------------------------------------ SDXL

def test_tiny_sdxl_text_conditions(sdxl):
    emb = sdxl.encode_prompt(["a cat", ""])
    assert sdxl.family == SDXL and emb.shape == (2, 78, 32)  # 16 + 16 penultimate states, then the pooled row
    assert emb[1].abs().sum() == 0  # the empty prompt is SDXL's zero unconditional embedding
    ids = [tok(["a cat"], padding="max_length", max_length=77, return_tensors="pt").input_ids
           for tok in (sdxl.tokenizer, sdxl.tokenizer_2)]
    with torch.no_grad():
        first = sdxl.text_encoder(ids[0], output_hidden_states=True).hidden_states[-2]
        second = sdxl.text_encoder_2(ids[1], output_hidden_states=True)
    assert torch.allclose(emb[:1, :77], torch.cat([first, second.hidden_states[-2]], -1))
    kw = sdxl.unet_kwargs(emb, (16, 16))
    assert torch.allclose(kw["added_cond_kwargs"]["text_embeds"][0], second.text_embeds[0])
    assert kw["encoder_hidden_states"].shape == (2, 77, 32)
    assert kw["added_cond_kwargs"]["time_ids"][0].tolist() == [128, 128, 0, 0, 128, 128]
    assert sdxl.scaling_factor == sdxl.vae.config.scaling_factor == 0.13025


def test_sdxl_vae_stays_fp32_under_a_half_precision_unet():
    bb = load_backbone("tiny-sdxl", device="cpu", dtype=torch.bfloat16)
    assert bb.unet.dtype == torch.bfloat16 and bb.vae.dtype == torch.float32
    photo = Image.new("RGB", (128, 128), (90, 60, 40))
    f = FeatureExtractor(bb, timesteps=(61,)).extract(*_inputs(bb, photo))
    assert f.latents.dtype == torch.bfloat16 and torch.isfinite(f.vae.rgb).all()


def test_tiny_sdxl_catalogue_matches_the_real_sdxl_config():
    with torch.device("meta"):
        real = UNet2DConditionModel(**_unet_config(SDXL_SHAPED))
    tiny = load_backbone("tiny-sdxl", device="cpu").unet
    assert catalogue(tiny) == catalogue(real) and len(decoder_taps(real)) == 9
    shapes = describe(real, ["up_blocks.0.attentions.2:attn-out", "up_blocks.1.resnets.0", "up_blocks.2.resnets.2"],
                      (128, 128))
    assert list(shapes.values()) == [(1280, 32, 32), (640, 64, 64), (320, 128, 128)]  # SDXL at 1024 px


def test_every_tap_kind_on_tiny_sdxl_has_the_described_shape(sdxl, pair):
    taps = catalogue(sdxl.unet)
    assert {t.split(":")[1] for t in taps} == set(KINDS) - {"out"}
    shapes = describe(sdxl.unet, taps, (16, 16))
    f = FeatureExtractor(sdxl, taps=taps, timesteps=(261,)).extract(*_inputs(sdxl, pair[0]))
    for name in taps:
        assert f.unet.maps[name].shape == (1, 2, 1, *shapes[name]), name
    assert f.vae.rgb.shape == (1, 3, 128, 128) and len(f.vae.maps) == 14


def test_sdxl_added_conditions_reach_the_unet(sdxl, pair):
    x, cond, uncond = _inputs(sdxl, pair[0])
    taps = ["up_blocks.0.resnets.0", "up_blocks.2.resnets.2"]

    def maps(**kw):
        return FeatureExtractor(sdxl, taps=taps, timesteps=(261,), **kw).extract(x, cond, uncond, with_vae=False).unet.maps

    base = maps()
    assert all(torch.equal(base[n], maps()[n]) for n in taps)  # same inputs, same features
    for other in (maps(original_size=(512, 512)), maps(crop=(32, 0))):
        assert all(not torch.allclose(base[n], other[n]) for n in taps)
    pooled = cond.clone()
    pooled[:, -1] *= -1  # only the pooled embedding changes
    other = FeatureExtractor(sdxl, taps=taps, timesteps=(261,)).extract(x, pooled, uncond, with_vae=False).unet.maps
    assert all(not torch.allclose(base[n][:, 1], other[n][:, 1]) for n in taps)  # the cond half moves
    assert all(torch.equal(base[n][:, 0], other[n][:, 0]) for n in taps)  # the uncond half does not


def test_sdxl_controlnet_zero_changes_nothing_perturbed_changes_features(sdxl, pair):
    x, cond, uncond = _inputs(sdxl, pair[0])
    image = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))

    def maps(control=None, **kw):
        ex = FeatureExtractor(sdxl, timesteps=(261,), control=control)
        return ex.extract(x, cond, uncond, with_vae=False, control_image=image if control else None).unet.maps

    plain = maps()
    zero = maps(Control(tiny_controlnet(sdxl.unet, perturb=False), "tiny"))
    live = maps(Control(tiny_controlnet(sdxl.unet), "tiny", steps=1))  # GATE: one guided step with added conditions
    name = "up_blocks.1.resnets.0"
    assert torch.allclose(plain[name], zero[name], atol=1e-6) and not torch.allclose(plain[name], live[name])


# ------------------------------------------------------------------ styles

def _sketch():
    sketch = Image.new("L", (128, 128), 255)
    ImageDraw.Draw(sketch).rectangle([30, 30, 90, 100], outline=0, width=2)
    return sketch


@pytest.mark.parametrize("source, taps", [
    ("tiny-sd2", None),
    ("tiny-sdxl", ("up_blocks.0.attentions.1:self-k", "up_blocks.1.resnets.0:res-out", "up_blocks.2.resnets.2")),
])
def test_style_trains_and_round_trips(source, taps, sd2, sdxl, pair, tmp_path):
    bb = sd2 if source == "tiny-sd2" else sdxl
    prior = fit_prior(bb, read_captions()[:40], n_components=8)
    assert prior.shape == tuple(bb.encode_prompt("x").shape[1:])  # SDXL: the pooled row is part of the prior
    cfg = TrainConfig(**FAST, iterations=2, lr=3e-3, taps=taps, resolution=128)  # SD 2's native 192 px is slower
    t = OneShotTrainer(bb, pair[0], _sketch(), "a house", cfg, clip=tiny_clip(), lpips_model=None, prior=prior)
    before = t.reconstruction_loss()
    t.run().save(tmp_path / "s")
    assert t.reconstruction_loss() < before
    with torch.no_grad():
        expected = _to_uint8(t.generator.eval()(t.example))
    info = json.loads((tmp_path / "s" / "style.json").read_text())
    assert info["backbone"]["family"] == bb.family and info["backbone"]["source"] == source
    style = load_style(tmp_path / "s", bb)
    if taps:
        assert set(style.generator.config.unet_taps) == set(taps)
    got = np.asarray(PhotoToSketch(style, bb)(pair[0]).sketch)
    assert np.array_equal(got, expected)  # train = inference, bit for bit


def test_a_style_is_refused_by_another_family(sd2, sdxl, tiny_backbone, tmp_path):
    for bb in (sd2, tiny_backbone):
        Style(generator_for(bb, (61,)), "a house", bb.resolution).save(tmp_path / bb.family)
    with pytest.raises(BadInputError, match="Stable Diffusion 2.x backbone .*Stable Diffusion XL backbone"):
        load_style(tmp_path / SD2, sdxl)
    with pytest.raises(BadInputError, match=f"Stable Diffusion 1.x.*{settings.SD_MODEL_ENV}"):
        load_style(tmp_path / SD1, sd2)
    old = json.loads((tmp_path / SD1 / "config.json").read_text())
    del old["backbone"]["family"]  # a style saved before families were recorded is an SD 1.x style
    (tmp_path / SD1 / "config.json").write_text(json.dumps(old))
    assert load_style(tmp_path / SD1, tiny_backbone).generator.config.backbone.get("family") is None
    with pytest.raises(BadInputError, match="Stable Diffusion 1.x"):
        load_style(tmp_path / SD1, sdxl)


# ------------------------------------------------------------------ loading

@pytest.mark.parametrize("hub_id", ["stabilityai/stable-diffusion-2-1", "stabilityai/stable-diffusion-xl-base-1.0"])
def test_offline_hub_id_names_the_setting(monkeypatch, hub_id):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError) as err:
        load_backbone(hub_id, device="cpu")
    msg = str(err.value)
    assert hub_id in msg and settings.SD_MODEL_ENV in msg and "HF_HUB_OFFLINE" in msg


def _save_diffusers_folder(bb, folder, pipeline: str):
    parts = {"unet": bb.unet, "vae": bb.vae, "text_encoder": bb.text_encoder, "tokenizer": bb.tokenizer,
             "scheduler": bb.scheduler, "text_encoder_2": bb.text_encoder_2, "tokenizer_2": bb.tokenizer_2}
    for name, part in parts.items():
        if part is not None:
            part.save_pretrained(str(folder / name))
    index = {"_class_name": pipeline} | {n: ["x", "y"] for n, p in parts.items() if p is not None}
    (folder / "model_index.json").write_text(json.dumps(index))


@pytest.mark.parametrize("source, pipeline", [("tiny-sd2", "StableDiffusionPipeline"),
                                              ("tiny-sdxl", "StableDiffusionXLPipeline")])
def test_family_is_read_from_a_local_folder(source, pipeline, sd2, sdxl, tmp_path):
    bb = sd2 if source == "tiny-sd2" else sdxl
    _save_diffusers_folder(bb, tmp_path, pipeline)
    loaded = load_backbone(str(tmp_path), device="cpu")
    assert loaded.family == bb.family and not loaded.is_demo
    assert loaded.prediction_type == bb.prediction_type and loaded.resolution == bb.resolution
    assert torch.equal(loaded.encode_prompt(["a cat", ""]), bb.encode_prompt(["a cat", ""]))


def test_family_rules():
    assert family_of({"_class_name": "StableDiffusionXLPipeline"}, {}) == SDXL
    assert family_of({}, {"addition_embed_type": "text_time"}) == SDXL
    assert family_of({"_class_name": "StableDiffusionPipeline"}, {"cross_attention_dim": 1024}) == SD2
    assert family_of({"_class_name": "StableDiffusionPipeline"}, {"use_linear_projection": True}) == SD2
    assert family_of({"_class_name": "StableDiffusionPipeline"}, {"cross_attention_dim": 768}) == SD1
