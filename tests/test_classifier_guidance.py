"""Classifier guidance toward recognisability: the fast splat render, the guidance step, and its use by the
samplers, rectify and heal (tiny random models; the shipped checkpoints only where marked)."""

import numpy as np
import pytest
import torch

from diffsketch_core.errors import BadInputError, DiffSketchError
from diffsketch_core.strokes.classifier import SketchClassifier
from diffsketch_core.strokes.diffusion import StrokeDiffusion, uniform_timesteps
from diffsketch_core.strokes.format import polylines_to_stroke3
from diffsketch_core.strokes.generate import generate
from diffsketch_core.strokes.guidance import ClassifierGuidance
from diffsketch_core.strokes.raster import render
from diffsketch_core.strokes.rectify import heal_many, rectify_many
from diffsketch_core.strokes.soft_raster import soft_render, splat_render
from test_strokes_model import CLASSES, tiny_model

SQUARE = [[[10, 10], [110, 10], [110, 110], [10, 110], [10, 10]], [[40, 60], [80, 60]]]


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    return SketchClassifier(class_names=CLASSES, image_size=32, widths=(8, 8, 8), feature_dim=16).eval()


def _square_points(scale=0.5):
    s = polylines_to_stroke3([np.array(p, float) for p in SQUARE])
    pts = torch.tensor(np.cumsum(s[:, :2], 0) * scale, dtype=torch.float32)[None]
    return s, pts, torch.tensor((s[:-1, 2] == 0).astype(np.float32))[None]


def test_splat_render_matches_the_exact_soft_render_and_opencv():
    s, pts, draw = _square_points()
    splat = splat_render(pts, draw, 64)[0].numpy()
    exact = soft_render(pts, draw, 64)[0].numpy()
    hard = 1 - render(s, 64, 1.5, transform=(0.5, np.zeros(2))) / 255.0
    assert np.corrcoef(splat.ravel(), exact.ravel())[0, 1] > 0.9
    assert np.corrcoef(splat.ravel(), hard.ravel())[0, 1] > 0.8
    assert splat[5, 30] > 0.8 and splat[20, 30] < 0.01  # on the top edge; inside the square, far from any line


def test_splat_render_leaves_lifted_segments_blank_and_passes_gradients():
    pts = torch.tensor([[[4.0, 8.0], [28.0, 8.0], [4.0, 24.0], [28.0, 24.0]]], requires_grad=True)
    ink = splat_render(pts, torch.tensor([[1.0, 0.0, 1.0]]), 32)
    assert ink[0, 8, 16] > 0.8 and ink[0, 24, 16] > 0.8 and ink[0, 16, 16] < 0.01  # the pen-up diagonal is not drawn
    (g,) = torch.autograd.grad(ink[0, 10, 16], pts)  # ink just below the top line: pull it down
    assert g[0, :2, 1].sum() > 0 and torch.isfinite(g).all()


def test_a_guidance_step_raises_the_classifiers_probability_of_the_class(classifier):
    guide = ClassifierGuidance(classifier, torch.tensor([0, 1, 2, -1]), rate=0.05, steps=2)
    torch.manual_seed(1)
    x0 = torch.randn(6, 24, 3) * 0.5
    logits = torch.zeros(6, 24, 3)
    logits[..., 0] = 3.0  # drawing throughout
    labels = torch.tensor([0, 1, 2, 0, 1, 3])  # 3: the null class (pulled toward its strongest class)
    targets = torch.tensor([0, 1, 2, 0, 1, -1])
    before = guide.log_prob(torch.cumsum(x0[..., :2], 1), logits.softmax(-1), targets)
    moved = guide(x0, logits, labels)
    after = guide.log_prob(torch.cumsum(moved[..., :2], 1), logits.softmax(-1), targets)
    assert (after > before).all()
    assert torch.equal(moved[..., 2:], x0[..., 2:])  # the pen channel is left alone
    still = guide(x0, logits, labels, weight=torch.tensor([0.0, 1, 1, 1, 1, 1]))
    torch.testing.assert_close(still[0], x0[0])  # a row with weight 0 does not move


def test_guidance_applies_only_where_the_classifier_knows_the_models_classes(classifier):
    model = tiny_model()
    assert ClassifierGuidance.for_model(model, classifier).class_map.tolist() == [0, 1, 2, -1]
    assert ClassifierGuidance.for_model(model, classifier, rate=0) is None
    other = SketchClassifier(class_names=("circle", "line"), image_size=32, widths=(8,), feature_dim=8)
    assert ClassifierGuidance.for_model(model, other) is None
    gen = generate("circle", n=2, sampler="ddim", steps=4, model=model, classifier=other)
    assert gen.classifier_guidance == 0.0


def test_the_sampler_guides_inside_the_interval_only(classifier):
    model, diff, labels = tiny_model(), StrokeDiffusion(), torch.tensor([0, 1, 3])
    plain = diff.sample(model, labels, uniform_timesteps(6), seed=3)
    outside = diff.sample(model, labels, uniform_timesteps(6), seed=3,
                          guide=ClassifierGuidance(classifier, torch.tensor([0, 1, 2, -1]), interval=(1000, 1000)))
    inside = diff.sample(model, labels, uniform_timesteps(6), seed=3,
                         guide=ClassifierGuidance(classifier, torch.tensor([0, 1, 2, -1]), interval=(0, 600)))
    assert torch.equal(plain.offsets, outside.offsets)
    assert not torch.allclose(plain.offsets, inside.offsets) and inside.nfe == plain.nfe  # no extra evaluation


def test_generate_uses_guidance_and_refuses_bad_strengths(classifier):
    model = tiny_model()
    kw = dict(n=2, sampler="ddim", steps=4, model=model, classifier=classifier, seed=0)
    guided, plain = generate("zigzag", **kw), generate("zigzag", classifier_guidance=0, **kw)
    assert guided.classifier_guidance > 0 and plain.classifier_guidance == 0
    assert any(g.shape != p.shape or not np.allclose(g, p) for g, p in zip(guided.sketches, plain.sketches))
    for bad in (-0.1, 2.0, "0.1", True, float("nan")):
        with pytest.raises(BadInputError, match="Classifier guidance"):
            generate("zigzag", classifier_guidance=bad, **kw)


def test_rectify_and_heal_take_classifier_guidance(classifier):
    model = tiny_model()
    sq = polylines_to_stroke3([np.array(p, float) for p in SQUARE])
    kw = dict(strength=0.6, guidance=0, steps=4)
    plain = rectify_many([sq], model, classifier, ["circle"], classifier_guidance=0, **kw)[0]
    guided = rectify_many([sq], model, classifier, ["circle"], classifier_guidance=0.2, **kw)[0]
    assert plain.sketch.shape != guided.sketch.shape or not np.allclose(plain.sketch, guided.sketch)
    healed = heal_many([sq[:5]], model, classifier, ["circle"], steps=4, classifier_guidance=0.2)[0]
    np.testing.assert_allclose(healed.sketch[:5, :2], sq[:5, :2], atol=1e-3)  # the known strokes stay
    with pytest.raises(BadInputError, match="Classifier guidance"):
        heal_many([sq], model, classifier, ["circle"], classifier_guidance=-1)


def test_a_missing_guiding_classifier_is_named_with_the_way_round_it(monkeypatch, tmp_path):
    from diffsketch_core.strokes import generate as generate_module
    from diffsketch_core.strokes.classifier import load_classifier

    monkeypatch.setattr(generate_module, "load_sketch_classifier", lambda: load_classifier(tmp_path / "gone"))
    with pytest.raises(DiffSketchError, match="(?s)Classifier guidance needs the sketch classifier.*classifier_guidance=0"):
        generate("circle", n=1, sampler="ddim", steps=2, model=tiny_model())
    assert len(generate("circle", n=1, sampler="ddim", steps=2, model=tiny_model(), classifier_guidance=0).sketches) == 1
