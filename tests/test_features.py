import torch
from diffusers import UNet2DConditionModel

from diffsketch_core.diffusion.backbone import _unet_config
from diffsketch_core.diffusion.features import DEFAULT_TIMESTEPS, FeatureExtractor, Taps, decoder_taps, vae_decoder_taps


def _inputs(bb, b=1, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(b, 3, size, size, generator=g) * 2 - 1
    return images, bb.encode_prompt(["a cat"] * b), bb.encode_prompt([""])


def test_decoder_taps_are_the_twelve_resnets(tiny_backbone):
    taps = decoder_taps(tiny_backbone.unet)
    assert len(taps) == 12 and taps[0] == "up_blocks.0.resnets.0" and taps[-1] == "up_blocks.3.resnets.2"
    assert len(vae_decoder_taps(tiny_backbone.vae)) == 14


def test_tap_equals_manual_residual_branch(tiny_backbone):
    bb = tiny_backbone
    ex = FeatureExtractor(bb, timesteps=(321,))
    images, cond, _ = _inputs(bb)
    z0 = ex.encode(images)
    resnet = bb.unet.up_blocks[1].resnets[2]
    seen = {}
    handle = resnet.register_forward_pre_hook(lambda m, args: seen.update(x=args[0], temb=args[1]))
    try:
        feats = ex.unet_features(z0, cond)
    finally:
        handle.remove()
    x, temb = seen["x"], seen["temb"]
    with torch.no_grad():
        h = resnet.conv1(resnet.nonlinearity(resnet.norm1(x)))
        h = h + resnet.time_emb_proj(resnet.nonlinearity(temb))[:, :, None, None]
        manual = resnet.conv2(resnet.dropout(resnet.nonlinearity(resnet.norm2(h))))
        full = resnet(x, temb)
    tapped = feats.maps["up_blocks.1.resnets.2"][:, 0, 0]
    torch.testing.assert_close(tapped, manual)
    assert not torch.allclose(tapped, full, atol=1e-3), "tap must be the branch, before the skip add"


def test_batched_timesteps_equal_one_at_a_time(tiny_backbone):
    bb = tiny_backbone
    images, cond, uncond = _inputs(bb, b=2)
    ex = FeatureExtractor(bb, max_batch=64)
    z0 = ex.encode(images)
    noise = torch.randn(2, len(DEFAULT_TIMESTEPS), *z0.shape[1:], generator=torch.Generator().manual_seed(3))
    full = ex.unet_features(z0, cond, uncond, noise=noise)
    for k in (0, 6, 12):
        single = FeatureExtractor(bb, timesteps=(DEFAULT_TIMESTEPS[k],), max_batch=1)
        one = single.unet_features(z0, cond, uncond, noise=noise[:, k:k + 1])
        for name in full.maps:
            torch.testing.assert_close(full.maps[name][:, :, k], one.maps[name][:, :, 0], atol=1e-5, rtol=1e-4)


def test_same_seed_same_features_other_seed_differs(tiny_backbone):
    bb = tiny_backbone
    images, cond, uncond = _inputs(bb)
    ex = FeatureExtractor(bb, timesteps=(61, 501))
    a = ex.extract(images, cond, uncond, seed=7)
    b = ex.extract(images, cond, uncond, seed=7)
    c = ex.extract(images, cond, uncond, seed=8)
    for name in a.unet.maps:
        assert torch.equal(a.unet.maps[name], b.unet.maps[name])
    assert not torch.equal(a.unet.maps["up_blocks.3.resnets.0"], c.unet.maps["up_blocks.3.resnets.0"])
    torch.testing.assert_close(a.vae.rgb, c.vae.rgb)  # the VAE sees z0, not the noise


def test_tiny_feature_shapes_follow_the_sd_layout(tiny_backbone):
    bb = tiny_backbone
    images, cond, uncond = _inputs(bb, size=128)
    f = FeatureExtractor(bb).extract(images, cond, uncond)
    h = 128 // 8
    widths = bb.unet.config.block_out_channels[::-1]
    for i in range(4):
        for j in range(3):
            assert f.unet.maps[f"up_blocks.{i}.resnets.{j}"].shape == (1, 2, 13, widths[i], h >> (3 - i), h >> (3 - i))
    assert f.unet.branches == ("uncond", "cond") and f.unet.timesteps == DEFAULT_TIMESTEPS
    assert f.vae.maps["decoder.mid_block.resnets.0"].shape[-1] == h
    assert f.vae.maps["decoder.up_blocks.3.resnets.2"].shape[-1] == 128
    assert f.vae.rgb.shape == (1, 3, 128, 128)


def test_sd15_layout_channels_and_resolutions_on_meta():
    """The real SD-1.5 UNet, built on the meta device (no memory, no compute): documented shapes hold."""
    with torch.device("meta"):
        unet = UNet2DConditionModel(**_unet_config("sd15-shaped"))
        x, emb = torch.empty(1, 4, 64, 64), torch.empty(1, 77, 768)
    with Taps(unet, decoder_taps(unet)) as taps:
        unet(x, torch.tensor([1], device="meta"), encoder_hidden_states=emb)
    expect = {0: (1280, 8), 1: (1280, 16), 2: (640, 32), 3: (320, 64)}
    for name, recs in taps.records.items():
        c, s = expect[int(name.split(".")[1])]
        assert recs[0].shape == (1, c, s, s), name


def test_vae_out_equals_plain_decode(tiny_backbone):
    bb = tiny_backbone
    ex = FeatureExtractor(bb)
    z0 = ex.encode(_inputs(bb)[0])
    with torch.no_grad():
        plain = bb.vae.decode(z0 / bb.scaling_factor).sample
    torch.testing.assert_close(ex.vae_features(z0).rgb, plain)


def test_hooks_are_removed_even_on_early_exit(tiny_backbone):
    bb = tiny_backbone
    images, cond, uncond = _inputs(bb)
    FeatureExtractor(bb, taps=["up_blocks.1.resnets.0"]).extract(images, cond, uncond)
    for model in (bb.unet, bb.vae):
        assert all(not m._forward_hooks for m in model.modules())


def test_named_attention_tap_is_returned_as_nchw(tiny_backbone):
    bb = tiny_backbone
    images, cond, _ = _inputs(bb, size=128)
    name = "up_blocks.1.attentions.0"
    f = FeatureExtractor(bb, taps=[name], timesteps=(261,)).extract(images, cond, with_vae=False)
    assert f.unet.maps[name].shape == (1, 1, 1, 32, 4, 4)


def test_unknown_tap_and_bad_timesteps_are_refused(tiny_backbone):
    import pytest

    with pytest.raises(ValueError, match="No module named"):
        FeatureExtractor(tiny_backbone, taps=["up_blocks.9"]).extract(*_inputs(tiny_backbone)[:2])
    with pytest.raises(ValueError, match="Timesteps"):
        FeatureExtractor(tiny_backbone, timesteps=(1000,))


def test_trajectory_capture_records_requested_steps(tiny_backbone):
    bb = tiny_backbone
    _, cond, uncond = _inputs(bb)
    ex = FeatureExtractor(bb, timesteps=(1, 41, 981))
    calls = []
    handle = bb.unet.register_forward_pre_hook(lambda m, args: calls.append(int(args[1])))
    try:
        f = ex.sample_with_features(cond, uncond, steps=50, seed=0)
    finally:
        handle.remove()
    assert len(calls) == 50
    assert f.unet.maps["up_blocks.3.resnets.2"].shape[:3] == (1, 2, 3)
    assert f.vae.rgb.shape == (1, 3, 128, 128)
    # the features at t=1 are those of the UNet call at t=1, not of another step
    assert not torch.allclose(f.unet.maps["up_blocks.3.resnets.2"][:, :, 0], f.unet.maps["up_blocks.3.resnets.2"][:, :, 2])


def test_trajectory_refuses_timesteps_off_the_grid(tiny_backbone):
    import pytest

    with pytest.raises(ValueError, match="DDIM grid"):
        FeatureExtractor(tiny_backbone, timesteps=(5,)).sample_with_features(tiny_backbone.encode_prompt("x"), steps=10)
