"""Issue 16 part 2 on tiny random models: GATE's fine-grained prompts (what each guidance branch is extracted with),
recorded with a style and used again by Photo -> Sketch; a captioner (a tiny BLIP built here) whose caption goes
into the prompt; offline errors naming the setting."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from conftest import requires_shared
from diffsketch_core.diffusion.captioner import CAPTIONER_ENV, load_captioner
from diffsketch_core.diffusion.features import FeatureExtractor, image_to_tensor
from diffsketch_core.diffusion.prompts import QUALITY_TAGS, PromptOptions, Prompts
from diffsketch_core.errors import BadInputError, MissingWeightsError
from diffsketch_core.perceptual import tiny_clip
from diffsketch_core.style.conditions import fit_prior, read_captions
from diffsketch_core.style.losses import LossWeights
from diffsketch_core.style.photo2sketch import PhotoToSketch
from diffsketch_core.style.store import load_style
from diffsketch_core.style.training import OneShotTrainer, TrainConfig, _to_uint8

FAST = dict(sample_steps=2, gen_batch=2, preview_every=100, timesteps=(61, 501), weights=LossWeights(lpips=0.0))
WORDS = ["a", "photo", "of", "horse", "house", "the", "sun", "in", "mud", "dog", "with", "red", "roof", "field"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]


# ------------------------------------------------------------------ prompt texts and options

def test_fine_grained_text_and_recorded_options():
    fine = PromptOptions(fine_grained=True, uncond="tags")
    assert fine.text(" a  horse. ") == f"a horse, {QUALITY_TAGS}"
    assert PromptOptions().text("a horse.") == "a horse."  # off: the caption exactly as typed (old styles unchanged)
    assert PromptOptions.from_meta(fine.to_meta()) == fine
    assert PromptOptions.from_meta(None) == PromptOptions() and PromptOptions().is_default  # styles made before
    with pytest.raises(ValueError, match="empty, tags, prompt"):
        PromptOptions(uncond="negative")
    with pytest.raises(BadInputError, match="Unknown unconditional prompt"):
        from diffsketch_core.style.training import prompt_options
        prompt_options(TrainConfig(uncond_prompt="nope"))


def test_prompt_options_change_the_features_of_the_branch_they_steer(tiny_backbone, pair):
    bb, photo = tiny_backbone, pair[0]
    ex = FeatureExtractor(bb, timesteps=(61, 501))
    z0 = ex.encode(image_to_tensor(photo))

    def feats(options):
        p = Prompts(bb, options)
        cond = p.cond("a house")
        return ex.unet_features(z0, cond, p.uncond(cond), seed=3).maps["up_blocks.3.resnets.2"]

    plain = feats(PromptOptions())
    fine = feats(PromptOptions(fine_grained=True))
    tags = feats(PromptOptions(fine_grained=True, uncond="tags"))
    both = feats(PromptOptions(fine_grained=True, uncond="prompt"))
    # (B, G, T, C, H, W), G = [uncond, cond]
    torch.testing.assert_close(fine[:, 0], plain[:, 0])  # the fine-grained prompt steers the cond half only
    assert not torch.allclose(fine[:, 1], plain[:, 1])
    torch.testing.assert_close(tags[:, 1], fine[:, 1])  # "tags" changes the unconditional half
    assert not torch.allclose(tags[:, 0], fine[:, 0])
    torch.testing.assert_close(both[:, 0], both[:, 1])  # "prompt": both halves extracted with the prompt


def _sketch():
    sketch = Image.new("L", (128, 128), 255)
    ImageDraw.Draw(sketch).rectangle([30, 30, 90, 100], outline=0, width=2)
    return sketch


def test_style_with_fine_grained_prompts_reproduces_at_inference(tiny_backbone, pair, tmp_path):
    bb, photo = tiny_backbone, pair[0]
    prior = fit_prior(bb, read_captions()[:40], n_components=8)
    cfg = TrainConfig(**FAST, iterations=2, lr=3e-3, fine_grained=True, uncond_prompt="tags")
    t = OneShotTrainer(bb, photo, _sketch(), "a house", cfg, clip=tiny_clip(), lpips_model=None, prior=prior)
    t.run().save(tmp_path / "s")
    with torch.no_grad():
        expected = _to_uint8(t.generator.eval()(t.example))
    style = load_style(tmp_path / "s", bb)
    assert style.meta["prompts"] == {"fine_grained": True, "uncond": "tags"} and style.caption == "a house"
    assert np.array_equal(np.asarray(PhotoToSketch(style, bb)(photo).sketch), expected)  # the same texts
    style.meta["prompts"] = None  # what inference would give without the recorded options: not the same
    assert not np.array_equal(np.asarray(PhotoToSketch(style, bb)(photo).sketch), expected)


# ------------------------------------------------------------------ captioner

@pytest.fixture(scope="module")
def captioner_dir(tmp_path_factory):
    """A tiny random BLIP captioning model and its processor (tokenizer made here), saved as a local folder."""
    from transformers import (BertTokenizerFast, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor,
                              BlipProcessor)

    vocab = {w: i for i, w in enumerate(SPECIAL + WORDS)}
    tok = BertTokenizerFast(vocab=vocab, bos_token="[DEC]")
    text = dict(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=32, encoder_hidden_size=16, max_position_embeddings=40, pad_token_id=0,
                bos_token_id=vocab["[DEC]"], sep_token_id=vocab["[SEP]"], eos_token_id=vocab["[SEP]"])
    vision = dict(hidden_size=16, image_size=32, patch_size=8, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision, projection_dim=16))
    with torch.no_grad():  # random logits: keep the special tokens out, so the caption is words (30 of them)
        model.text_decoder.cls.predictions.bias[: len(SPECIAL)] = -1e4
    folder = tmp_path_factory.mktemp("captioner")
    model.save_pretrained(folder)
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok)
    processor.save_pretrained(folder)
    return folder


def test_captioner_from_a_folder_writes_a_caption(captioner_dir, pair):
    cap = load_captioner(str(captioner_dir), device="cpu")
    text = cap.caption(pair[0])
    assert text and set(text.split()) <= set(WORDS)
    assert cap.caption(pair[0]) == text  # greedy: the same photo, the same caption
    other = cap.caption(Image.new("RGB", (64, 48), (10, 200, 30)))
    assert isinstance(other, str) and other


def test_caption_goes_into_the_prompt_per_photo(captioner_dir, tiny_backbone, pair, tmp_path):
    bb, photo = tiny_backbone, pair[0]
    cap = load_captioner(str(captioner_dir), device="cpu")
    prior = fit_prior(bb, read_captions()[:40], n_components=8)
    cfg = TrainConfig(**FAST, iterations=1, fine_grained=True)
    t = OneShotTrainer(bb, photo, _sketch(), cap.caption(photo), cfg, clip=tiny_clip(), lpips_model=None, prior=prior)
    t.run().save(tmp_path / "s")
    style = load_style(tmp_path / "s", bb)
    assert style.caption == cap.caption(photo)
    red = Image.new("RGB", (96, 80), (220, 30, 30))
    fixed = PhotoToSketch(style, bb)(red)
    each = PhotoToSketch(style, bb, captioner=cap)(red)
    said = cap.caption(red)
    assert f"Caption: '{said}'" in each.notes
    if said != style.caption:  # another caption, another condition, another sketch
        assert not np.array_equal(np.asarray(each.sketch), np.asarray(fixed.sketch))
    own = PhotoToSketch(style, bb, captioner=cap)(photo)  # its own photo: the style's own caption again
    assert np.array_equal(np.asarray(own.sketch), np.asarray(PhotoToSketch(style, bb)(photo).sketch))


def test_missing_captioner_offline_names_the_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError, match=f"{CAPTIONER_ENV}.*--captioner") as err:
        load_captioner("Salesforce/blip-image-captioning-base")
    assert "HF_HUB_OFFLINE" in str(err.value)
    with pytest.raises(MissingWeightsError, match="no config.json"):
        load_captioner(str(tmp_path))


def test_clis_caption_only_when_a_captioner_is_named(captioner_dir, pair, tmp_path, capsys, monkeypatch):
    from diffsketch_core.style import photo2sketch
    from diffsketch_core.style.training import caption_photo

    pair[0].save(tmp_path / "photo.png")
    said = load_captioner(str(captioner_dir), device="cpu").caption(pair[0])
    monkeypatch.delenv(CAPTIONER_ENV, raising=False)
    assert caption_photo(tmp_path / "photo.png") == ""  # none named: nothing loaded, the trainer's default applies
    assert caption_photo(tmp_path / "photo.png", str(captioner_dir)) == said  # --captioner
    monkeypatch.setenv(CAPTIONER_ENV, str(captioner_dir))
    assert caption_photo(tmp_path / "photo.png") == said  # $DIFFSKETCH_CAPTIONER
    monkeypatch.delenv(CAPTIONER_ENV)
    # Photo -> Sketch: --caption-each without a captioner is the user's mistake, said before anything loads
    assert photo2sketch.main(["--style", str(tmp_path / "none"), "--caption-each", str(tmp_path / "photo.png"),
                              str(tmp_path / "o")]) == 2
    assert "--caption-each needs a captioner" in capsys.readouterr().err


# ------------------------------------------------------------------ app

def test_style_tab_prompt_options_and_caption_button(captioner_dir, pair, tmp_path, monkeypatch):
    from test_app import uploaded
    from ui import style

    assert style.advanced_techniques("", "", "canny", 0, "") == {}  # off by default
    assert style.advanced_techniques("", "", "canny", 0, "", False, 0, True, "tags") == {"fine_grained": True,
                                                                                       "uncond_prompt": "tags"}
    with pytest.raises(style.gr.Error, match="Unconditional half"):
        style.advanced_techniques("", "", "canny", 0, "", False, 0, True, "negative")
    ip = style.advanced_techniques("", "", "canny", 0, "", False, 0, False, "empty", " tiny ")
    assert ip == {"ip_adapter": "tiny"}
    assert all(t in style.techniques_status() for t in ("Fine-grained prompt", "Captioner", "IP-Adapter"))
    pair[0].save(tmp_path / "photo.png")
    photo = uploaded(tmp_path / "photo.png")
    said = load_captioner(str(captioner_dir), device="cpu").caption(pair[0])
    assert style.caption_photo(photo, str(captioner_dir)) == said
    with pytest.raises(style.gr.Error, match="Name a captioner"):
        style.caption_photo(photo, "")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(style.gr.Error, match=CAPTIONER_ENV):
        style.caption_photo(photo, "someone/no-such-captioner")


@requires_shared
def test_app_trains_with_the_captioners_caption_and_captions_each_photo(captioner_dir, pair, tmp_path):
    import json
    from pathlib import Path

    from test_app import req, uploaded
    from ui import photo as photo_tab
    from ui import style

    pair[0].save(tmp_path / "photo.png")
    pair[1].save(tmp_path / "sketch.png")
    files = uploaded(tmp_path / "photo.png"), uploaded(tmp_path / "sketch.png")
    outs = list(style.train_style(*files, "", 2, "tiny", req("prompts"), "auto", "", "", "canny", 0, "", False, 0,
                                  True, "tags", str(captioner_dir)))
    said = load_captioner(str(captioner_dir), device="cpu").caption(pair[0])
    assert outs[0][0] == f"Caption from the captioner (kept with the style): '{said}'. "
    assert outs[1][0].startswith(outs[0][0] + "Preparing")  # still said while training is prepared
    info = json.loads((Path(outs[-1][4]) / "style.json").read_text())
    assert info["caption"] == said and info["prompts"] == {"fine_grained": True, "uncond": "tags"}
    _, _, note = photo_tab.photos_to_sketches([files[0]], "Same as photo", 0, 0, False, outs[-1][4], "tiny",
                                              req("prompts"), captioner=str(captioner_dir))
    assert f"photo.png: Caption: '{said}'" in note
