"""Issue 16 on tiny random models: every tap kind as a feature, ControlNet-conditioned extraction (GATE), both
end to end inside style training and Photo -> Sketch."""

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from PIL import Image, ImageDraw

from diffsketch_core.diffusion.backbone import _unet_config
from diffsketch_core.diffusion.controlnet import Control, load_controlnet, tiny_controlnet
from diffsketch_core.diffusion.features import FeatureExtractor
from diffsketch_core.diffusion.taps import KINDS, catalogue, describe
from diffsketch_core.errors import MissingWeightsError
from diffsketch_core.perceptual import tiny_clip
from diffsketch_core.style.conditions import fit_prior, read_captions
from diffsketch_core.style.losses import LossWeights
from diffsketch_core.style.photo2sketch import PhotoToSketch
from diffsketch_core.style.store import load_style
from diffsketch_core.style.training import OneShotTrainer, TrainConfig, _to_uint8, make_control_image

FAST = dict(sample_steps=2, gen_batch=2, preview_every=100, timesteps=(61, 501), weights=LossWeights(lpips=0.0))


@pytest.fixture(scope="module")
def photo(pair):
    return pair[0]


def _inputs(bb, photo):
    from diffsketch_core.diffusion.features import image_to_tensor

    return image_to_tensor(photo), bb.encode_prompt("a house"), bb.encode_prompt("")


# ------------------------------------------------------------------ tap kinds

def test_catalogue_of_tiny_unet_equals_real_sd15_names(tiny_backbone):
    with torch.device("meta"):
        real = UNet2DConditionModel(**_unet_config("sd15-shaped"))
    tiny = catalogue(tiny_backbone.unet)
    assert tiny == catalogue(real) and len(tiny) == 12 * 2 + 9 * 6
    assert {t.split(":")[1] for t in tiny} == set(KINDS) - {"out"}


def test_every_tap_kind_extracts_with_the_shape_describe_predicts(tiny_backbone, photo):
    bb = tiny_backbone
    taps = catalogue(bb.unet)
    shapes = describe(bb.unet, taps, (16, 16))
    f = FeatureExtractor(bb, taps=taps, timesteps=(261,)).extract(*_inputs(bb, photo), with_vae=False)
    for name in taps:
        assert f.unet.maps[name].shape == (1, 2, 1, *shapes[name]), name
    c, _, _ = shapes["up_blocks.1.attentions.0:ffn-inner"]
    assert c == 4 * shapes["up_blocks.1.attentions.0:attn-out"][0]  # the GEGLU hidden is 4 C wide
    out = f.unet.maps["up_blocks.1.resnets.0:res-out"]
    inc = f.unet.maps["up_blocks.1.resnets.0:res-increment"]
    assert not torch.allclose(out, inc)


def test_bad_tap_kinds_are_refused(tiny_backbone):
    for bad, match in (("up_blocks.1.resnets.0:self-q", "resnet tap"), ("up_blocks.1.attentions.0:res-out", "needs a"),
                       ("up_blocks.1.resnets.0:nope", "Unknown tap kind")):
        with pytest.raises(ValueError, match=match):
            describe(tiny_backbone.unet, [bad], (16, 16))


# ------------------------------------------------------------------ ControlNet

def test_zero_controlnet_leaves_features_unchanged_a_perturbed_one_changes_them(tiny_backbone, photo):
    bb = tiny_backbone
    images, cond, uncond = _inputs(bb, photo)
    control_image = make_control_image(photo, "canny", 128)
    plain = FeatureExtractor(bb, timesteps=(61, 501)).extract(images, cond, uncond, seed=3)
    zero = FeatureExtractor(bb, timesteps=(61, 501), control=Control(tiny_controlnet(bb.unet, perturb=False), "t"))
    perturbed = FeatureExtractor(bb, timesteps=(61, 501), control=Control(tiny_controlnet(bb.unet), "t"))
    a = zero.extract(images, cond, uncond, seed=3, control_image=control_image)
    b = perturbed.extract(images, cond, uncond, seed=3, control_image=control_image)
    for name in plain.unet.maps:
        torch.testing.assert_close(a.unet.maps[name], plain.unet.maps[name])
    assert not torch.allclose(b.unet.maps["up_blocks.3.resnets.2"], plain.unet.maps["up_blocks.3.resnets.2"])
    other = make_control_image(Image.new("RGB", (128, 128), "white"), "canny", 128)
    c = perturbed.extract(images, cond, uncond, seed=3, control_image=other)
    assert not torch.allclose(b.unet.maps["up_blocks.3.resnets.2"], c.unet.maps["up_blocks.3.resnets.2"])


def test_gate_recipe_runs_guided_steps_before_extracting(tiny_backbone, photo):
    bb = tiny_backbone
    images, cond, uncond = _inputs(bb, photo)
    calls = []
    handle = bb.unet.register_forward_pre_hook(lambda m, args: calls.append(args[1].tolist()))
    try:
        ex = FeatureExtractor(bb, timesteps=(61, 501), control=Control(tiny_controlnet(bb.unet), "t", steps=3))
        ex.extract(images, cond, uncond, control_image=make_control_image(photo, "canny", 128), with_vae=False)
    finally:
        handle.remove()
    assert len(calls) == 3 + 1  # 4 rows fit one batch: 3 guided steps, then the extracting forward
    assert calls[0] == [64, 504] * 2 and calls[-1] == [61, 501] * 2


def test_missing_controlnet_offline_says_what_to_set(tiny_backbone, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError, match="--controlnet.*advanced panel"):
        load_controlnet("lllyasviel/sd-controlnet-canny", tiny_backbone)
    with pytest.raises(MissingWeightsError, match="no config.json"):
        load_controlnet(str(__import__("pathlib").Path(__file__).parent), tiny_backbone)


# ------------------------------------------------------------------ end to end

@pytest.mark.parametrize("extra", [
    dict(taps=("up_blocks.1.resnets.0:res-out", "up_blocks.2.attentions.1:self-q", "up_blocks.3.attentions.2:attn-out"),
         lora="made-in-test"),
    dict(controlnet="tiny", control_steps=2),
])
def test_style_with_technique_trains_and_reproduces_at_inference(tiny_backbone, photo, tmp_path, extra):
    bb = tiny_backbone
    if "lora" in extra:
        extra = dict(extra, lora=str(_make_lora(bb.unet, tmp_path / "l.safetensors")))
    sketch = Image.new("L", (128, 128), 255)
    ImageDraw.Draw(sketch).rectangle([30, 30, 90, 100], outline=0, width=2)
    prior = fit_prior(bb, read_captions()[:40], n_components=8)
    t = OneShotTrainer(bb, photo, sketch, "a house", TrainConfig(**(FAST | extra), iterations=2, lr=3e-3),
                       clip=tiny_clip(), lpips_model=None, prior=prior)
    before = t.reconstruction_loss()
    t.run().save(tmp_path / "s")
    assert t.reconstruction_loss() < before
    with torch.no_grad():
        expected = _to_uint8(t.generator.eval()(t.example))
    style = load_style(tmp_path / "s", bb)
    if "taps" in extra:
        assert set(style.generator.config.unet_taps) == set(extra["taps"])
        assert style.meta["lora"]["source"] == extra["lora"]
    else:
        assert style.meta["control"]["controlnet"] == "tiny"
    got = np.asarray(PhotoToSketch(style, bb)(photo).sketch)
    assert np.array_equal(got, expected)


# ------------------------------------------------------------------ LoRA

def _make_lora(unet, path, rank=2, conv=True):
    """A LoRA made here: random low-rank pairs on two attention projections (peft layout) and one conv (old layout)."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    tensors = {}
    for name in ("up_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
                 "up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_v"):
        w = unet.get_submodule(name).weight
        tensors[f"unet.{name}.lora_A.weight"] = torch.randn(rank, w.shape[1], generator=g)
        tensors[f"unet.{name}.lora_B.weight"] = torch.randn(w.shape[0], rank, generator=g) * 0.5
    if conv:
        w = unet.get_submodule("up_blocks.3.resnets.0.conv1").weight
        tensors["up_blocks.3.resnets.0.conv1.lora.down.weight"] = torch.randn(rank, *w.shape[1:], generator=g)
        tensors["up_blocks.3.resnets.0.conv1.lora.up.weight"] = torch.randn(w.shape[0], rank, 1, 1, generator=g) * 0.1
    save_file(tensors, str(path))
    return path


def test_lora_changes_the_features_and_unloading_restores_them(tiny_backbone, photo, tmp_path):
    from diffsketch_core.diffusion.lora import load_lora

    bb = tiny_backbone
    images, cond, uncond = _inputs(bb, photo)
    before = {k: v.clone() for k, v in bb.unet.state_dict().items()}
    lora = load_lora(str(_make_lora(bb.unet, tmp_path / "l.safetensors")))
    assert len(lora.pairs) == 3
    plain = FeatureExtractor(bb, timesteps=(61,)).extract(images, cond, uncond, with_vae=False)
    lored = FeatureExtractor(bb, timesteps=(61,), lora=lora).extract(images, cond, uncond, with_vae=False)
    assert not torch.allclose(lored.unet.maps["up_blocks.3.resnets.2"], plain.unet.maps["up_blocks.3.resnets.2"])
    for k, v in bb.unet.state_dict().items():  # unloaded: the shared UNet is bit for bit what it was
        assert torch.equal(v, before[k]), k
    again = FeatureExtractor(bb, timesteps=(61,)).extract(images, cond, uncond, with_vae=False)
    torch.testing.assert_close(again.unet.maps["up_blocks.3.resnets.2"], plain.unet.maps["up_blocks.3.resnets.2"])


def test_lora_errors_are_sentences(tiny_backbone, tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from diffsketch_core.diffusion.lora import load_lora
    from diffsketch_core.errors import BadInputError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError, match="--lora"):
        load_lora("someone/some-lora")
    save_file({"unet.nope.lora_A.weight": torch.zeros(2, 4), "unet.nope.lora_B.weight": torch.zeros(4, 2)},
              str(tmp_path / "bad.safetensors"))
    with pytest.raises(BadInputError, match="no layer 'nope'"):
        with load_lora(str(tmp_path / "bad.safetensors")).applied(tiny_backbone.unet):
            pass


def test_kohya_loras_merge_exactly_as_the_diffusers_layout_does(tiny_backbone, tmp_path):
    from safetensors.torch import load_file, save_file

    from diffsketch_core.diffusion.lora import load_lora

    unet = tiny_backbone.unet
    diffusers_layout = load_file(str(_make_lora(unet, tmp_path / "d.safetensors", conv=False)))
    kohya = {"lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(2, 4)}  # ignored
    for key, t in diffusers_layout.items():  # unet.a.b.lora_A.weight -> lora_unet_a_b.lora_down.weight
        module, part = key.removeprefix("unet.").rsplit(".lora_", 1)
        kohya[f"lora_unet_{module.replace('.', '_')}.lora_{'down' if part[0] == 'A' else 'up'}.weight"] = t
        kohya[f"lora_unet_{module.replace('.', '_')}.alpha"] = torch.tensor(1.0)  # alpha 1 on rank 2: half
    save_file(kohya, str(tmp_path / "k.safetensors"))
    merged = []
    for path, scale in ((tmp_path / "d.safetensors", 0.5), (tmp_path / "k.safetensors", 1.0)):
        with load_lora(str(path)).applied(unet, scale=scale):
            merged.append({k: v.clone() for k, v in unet.state_dict().items()})
    assert len(load_lora(str(tmp_path / "k.safetensors")).pairs) == 2
    for k in merged[0]:
        torch.testing.assert_close(merged[1][k], merged[0][k])


@pytest.mark.parametrize("tensors, match", [
    ({"lora_unet_input_blocks_4_1_proj_in.lora_down.weight": torch.zeros(2, 4),
      "lora_unet_input_blocks_4_1_proj_in.lora_up.weight": torch.zeros(4, 2)}, "diffusers layout first"),
    ({"lora_unet_down_blocks_0_attentions_0_proj_in.hada_w1_a": torch.zeros(4, 2)}, "LyCORIS"),
])
def test_lora_layouts_we_cannot_merge_get_a_sentence(tiny_backbone, tmp_path, tensors, match):
    from safetensors.torch import save_file

    from diffsketch_core.diffusion.lora import load_lora
    from diffsketch_core.errors import BadInputError

    save_file(tensors, str(tmp_path / "x.safetensors"))
    with pytest.raises(BadInputError, match=match):
        with load_lora(str(tmp_path / "x.safetensors")).applied(tiny_backbone.unet):
            pass


def test_img2img_proxy_follows_strength_and_control(tiny_backbone, photo):
    from diffsketch_core.diffusion.controlnet import residuals
    from diffsketch_core.diffusion.sampling import img2img

    bb = tiny_backbone
    images, cond, uncond = _inputs(bb, photo)
    z0 = FeatureExtractor(bb).encode(images)
    assert torch.equal(img2img(bb, z0, cond, uncond, strength=0.0, steps=10), z0)
    weak = img2img(bb, z0, cond, uncond, strength=0.2, steps=10)
    strong = img2img(bb, z0, cond, uncond, strength=0.8, steps=10)
    assert (weak - z0).abs().mean() < (strong - z0).abs().mean()
    control = Control(tiny_controlnet(bb.unet), "t")
    image = make_control_image(photo, "canny", 128)
    guided = img2img(bb, z0, cond, uncond, strength=0.8, steps=10,
                     extra=lambda x, t, e: residuals(control, x, t, e, image.expand(x.shape[0], -1, -1, -1)))
    assert not torch.allclose(guided, strong)


# ------------------------------------------------------------------ amalgamation

def test_weight_assigners_start_as_the_average_and_learn_a_mix():
    from diffsketch_core.style.generator import WeightAssigner, amalgamate

    torch.manual_seed(0)
    a = WeightAssigner(4, 8, 4)
    good, bad = torch.randn(6, 4, 5, 5), torch.randn(6, 4, 5, 5)
    torch.testing.assert_close(amalgamate(a, [good, bad]), (good + bad) / 2)
    opt = torch.optim.Adam(a.parameters(), lr=0.05)
    losses = []
    for _ in range(60):
        loss = (amalgamate(a, [good, bad]) - good).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.2 * losses[0]


def test_amalgamated_style_trains_and_reproduces_at_inference(tiny_backbone, photo, tmp_path):
    bb = tiny_backbone
    sketch = Image.new("L", (128, 128), 255)
    ImageDraw.Draw(sketch).rectangle([30, 30, 90, 100], outline=0, width=2)
    prior = fit_prior(bb, read_captions()[:40], n_components=8)
    cfg = TrainConfig(**FAST, iterations=4, lr=3e-3, controlnet="tiny", amalgamate=True, extra_seeds=1)
    t = OneShotTrainer(bb, photo, sketch, "a house", cfg, clip=tiny_clip(), lpips_model=None, prior=prior)
    assert len(t.example.buckets) == 2 and t.generator.config.num_buckets == 3  # plain, ControlNet, another seed
    mixing = [p.clone() for p in t.generator.assigners.parameters()]
    before = t.reconstruction_loss()
    t.run().save(tmp_path / "s")
    assert t.reconstruction_loss() < before
    assert any(not torch.equal(a, b) for a, b in zip(mixing, t.generator.assigners.parameters()))
    with torch.no_grad():
        expected = _to_uint8(t.generator.eval()(t.example))
    style = load_style(tmp_path / "s", bb)
    assert [b["seed_offset"] for b in style.meta["buckets"]] == [0, 0, 1]
    assert np.array_equal(np.asarray(PhotoToSketch(style, bb)(photo).sketch), expected)
