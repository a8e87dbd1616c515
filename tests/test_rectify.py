import numpy as np
import pytest
import torch
from PIL import Image

from diffsketch_core.errors import BadInputError
from diffsketch_core.strokes.format import DRAW, polylines_to_stroke3, stroke3_to_polylines
from diffsketch_core.strokes.raster import render
from diffsketch_core.strokes.rectify import AUTO_STRENGTH, Perceptual, heal, heal_many, polylines_to_sketch, rectify, rectify_many
from diffsketch_core.strokes.soft_raster import soft_render
from diffsketch_core.strokes.vectorize import vectorize
from conftest import requires_shared
from test_recognizability import tiny_classifier  # noqa: F401 (fixture)
from test_strokes_model import tiny_model

SQUARE = [[[20, 20], [100, 20], [100, 100], [20, 100], [20, 20]], [[20, 20], [100, 100]]]


def test_soft_render_matches_opencv_up_to_blur():
    s = polylines_to_stroke3([np.array(p, float) for p in SQUARE])
    pts = torch.tensor(np.cumsum(s[:, :2], 0) * 0.5, dtype=torch.float32)[None]  # 128 px frame -> 64
    draw = torch.tensor((s[:-1, 2] == 0).astype(np.float32))[None]
    soft = soft_render(pts, draw, 64, sigma=1.0)[0].numpy()
    hard = 1 - render(s, 64, 1.5, transform=(0.5, np.zeros(2))) / 255.0
    import cv2
    blurred = cv2.GaussianBlur(hard.astype(np.float32), (0, 0), 1.0)
    assert np.corrcoef(soft.ravel(), blurred.ravel())[0, 1] > 0.9


def test_soft_render_gradient_moves_a_point_toward_ink():
    target = torch.zeros(1, 32, 32)
    target[0, 14:18, 18:21] = 1  # a blob to the right of the segment's end
    pts = torch.tensor([[[8.0, 16.0], [12.0, 16.0]]], requires_grad=True)
    opt = torch.optim.SGD([pts], lr=1.0)
    start = pts[0, 1, 0].item()
    for _ in range(40):
        ink = soft_render(pts, torch.ones(1, 1), 32, sigma=2.0)
        loss = -(ink * target).sum()  # more ink on the blob
        opt.zero_grad()
        loss.backward()
        with torch.no_grad():
            pts.grad[0, 0] = 0  # keep the first point fixed
        opt.step()
    assert pts[0, 1, 0].item() > start + 4 and abs(pts[0, 1, 1].item() - 16) < 2


def test_vectorise_then_render_overlaps():
    s = polylines_to_stroke3([np.array(p, float) for p in SQUARE])
    img = render(s, 128, 3, transform=(1.0, np.zeros(2)))
    v = vectorize(Image.fromarray(img))
    back = render(v, 128, 3, transform=(1.0, np.zeros(2)))
    a, b = img < 128, back < 128
    iou = (a & b).sum() / (a | b).sum()
    assert iou > 0.5 and len(stroke3_to_polylines(v)) >= 2


@pytest.mark.parametrize("bad, match", [
    ([], "empty"), ([[]], "empty"), ([[[5, 5]]], "single dot"), ([[[5, 5], [5.5, 5]]], "single dot"),
    ([[[0, 0], [1e9, 0]]], "out of range"), ([[[0, 0], [float("nan"), 3]]], "out of range"),
])
def test_bad_canvas_input(bad, match):
    with pytest.raises(BadInputError, match=match):
        polylines_to_sketch(bad)


def test_image_without_ink_is_refused():
    with pytest.raises(BadInputError, match="no ink"):
        vectorize(Image.new("L", (64, 64), 255))


def test_thousands_of_points_are_resampled(tiny_classifier):
    t = np.linspace(0, 2 * np.pi, 3000)
    circle = [np.column_stack([200 + 100 * np.cos(t), 200 + 100 * np.sin(t)]).tolist()]
    res = rectify(circle, tiny_model(), tiny_classifier, strength=0.2, guidance=0, steps=4)
    assert any("simplified" in n for n in res.notes) and np.isfinite(res.sketch).all()


def test_unknown_class_lists_classes():
    with pytest.raises(BadInputError, match="circle, line, zigzag"):
        rectify(SQUARE, tiny_model(), class_name="dragon", steps=2, guidance=0)


def test_small_strength_stays_close_to_the_input():
    res = rectify(SQUARE, tiny_model(), class_name="line", strength=0.02, guidance=0, steps=5)
    a = np.cumsum(res.rough[:, :2], 0)
    b = np.cumsum(res.sketch[:, :2], 0)
    nearest = np.sqrt(((b[:, None] - a[None]) ** 2).sum(-1)).min(1)
    assert len(b) >= 2 and nearest.max() < 8  # px on a 80 px drawing (the untrained pen head may drop specks)


def test_eta_adds_fresh_seeded_noise_and_is_checked():
    model, kw = tiny_model(), dict(class_name="line", strength=0.8, guidance=0, steps=4, seed=0)
    deterministic = rectify(SQUARE, model, eta=0.0, **kw).sketch
    stochastic = rectify(SQUARE, model, eta=1.0, **kw).sketch
    assert np.isfinite(stochastic).all() and not np.array_equal(stochastic, deterministic)
    np.testing.assert_array_equal(rectify(SQUARE, model, eta=1.0, **kw).sketch, stochastic)  # same seed, same sketch
    for bad in (-0.1, 1.5, "often", True):
        with pytest.raises(BadInputError, match="eta"):
            rectify(SQUARE, model, eta=bad, **kw)


def test_heal_keeps_known_points_exactly():
    known = polylines_to_stroke3([np.array(SQUARE[0], float)])
    res = heal(known, tiny_model(), class_name="circle", steps=6)
    n = len(known)
    np.testing.assert_allclose(res.sketch[:n, :2], known[:, :2], atol=1e-3)
    assert res.sketch[n - 1, 2] == 1


@requires_shared
def test_guidance_steps_reduce_the_perceptual_distance():
    """The guidance step itself: a few normalised steps on the points bring the soft render closer to the target."""
    from diffsketch_core.strokes.rectify import RENDER, _fit, _guide

    perc = Perceptual("lpips")
    rough = torch.from_numpy(polylines_to_stroke3([np.array(p, float) for p in SQUARE])[:, :2]).float()[None] / 10
    x0 = torch.cat([rough + 0.3 * torch.randn(rough.shape, generator=torch.Generator().manual_seed(0)),
                    torch.ones(1, rough.shape[1], 1)], -1)  # a pen channel rides along untouched
    logits = torch.zeros(1, rough.shape[1], 3)
    logits[..., DRAW] = 5
    fit = _fit(torch.cumsum(rough, 1))
    target = soft_render(torch.cumsum(rough, 1) * fit[0] + fit[1], torch.ones(1, rough.shape[1] - 1), RENDER)

    def dist(x):
        return float(perc(soft_render(torch.cumsum(x[..., :2], 1) * fit[0] + fit[1], torch.ones(1, x.shape[1] - 1), RENDER), target))

    x = x0
    for _ in range(10):
        x = _guide(x, logits, target, fit, perc, 0.1)
    assert dist(x) < 0.8 * dist(x0) and torch.equal(x[..., 2], x0[..., 2])


@requires_shared
def test_lpips_guidance_runs():
    res = rectify(SQUARE, tiny_model(), class_name="circle", strength=0.3, guidance=0.5, steps=3, perceptual="lpips")
    assert res.nfe == 3 and np.isfinite(res.sketch).all()


def test_auto_strength_comes_from_the_classifier_and_is_said(tiny_classifier):
    res = rectify(SQUARE, tiny_model(), tiny_classifier, class_name="circle", strength="auto", guidance=0, steps=3)
    note = next(n for n in res.notes if n.startswith("Automatic strength"))
    value = float(note.split()[2])
    assert AUTO_STRENGTH[0] <= value <= AUTO_STRENGTH[1]
    for bad in (0, 1.5, "strong"):
        with pytest.raises(BadInputError, match="Strength"):
            rectify(SQUARE, tiny_model(), tiny_classifier, strength=bad, guidance=0, steps=2)


def test_a_batch_keeps_each_sketch_in_its_own_frame():
    small = [[[x / 10 + 500, y / 10 + 300] for x, y in line] for line in SQUARE]  # 8 px wide, far away
    out = rectify_many([SQUARE, small], tiny_model(), None, ["line", "zigzag"], strength=0.02, guidance=0, steps=4)
    assert [r.class_name for r in out] == ["line", "zigzag"]
    for r in out:
        a, b = np.cumsum(r.sketch[:, :2], 0), np.cumsum(r.rough[:, :2], 0)
        assert np.abs(a.mean(0) - b.mean(0)).max() < 0.2 * np.ptp(b, axis=0).max()
    healed = heal_many([SQUARE[:1], small[:1]], tiny_model(), None, "circle", steps=4)
    assert len(healed) == 2 and all(r.class_name == "circle" for r in healed)


def test_heal_makes_room_in_a_long_sketch():
    t = np.linspace(0, 2 * np.pi, 300)
    res = heal([np.column_stack([200 + 100 * np.cos(t), 200 + 100 * np.sin(t)]).tolist()], tiny_model(),
               class_name="circle", steps=3)
    assert any("simplified to 18" in n for n in res.notes) and np.isfinite(res.sketch).all()


def test_anchor_pulls_each_point_back_to_its_own_input_point():
    from diffsketch_core.strokes.rectify import _anchor
    start = torch.tensor([[[0.0, 0.0, -1.0], [10.0, 0.0, -1.0], [0.0, 5.0, 1.0]]])  # offsets + pen channel
    drifted = start + torch.tensor([[[0.0, 1.0, 0.2], [0.5, 0.5, 0.0], [0.0, 0.0, -0.4]]])
    np.testing.assert_allclose(_anchor(drifted, start, torch.tensor([1.0])), start, atol=1e-6)
    half = _anchor(drifted, start, torch.tensor([0.5]))
    # absolute positions halfway back: the drift does not pile up along the offsets
    np.testing.assert_allclose(torch.cumsum(half[..., :2], 1), (torch.cumsum(start[..., :2], 1) +
                                                                 torch.cumsum(drifted[..., :2], 1)) / 2, atol=1e-6)
    np.testing.assert_allclose(half[..., 2], (start[..., 2] + drifted[..., 2]) / 2)
    np.testing.assert_allclose(_anchor(drifted, start, torch.tensor([0.0])), drifted, atol=1e-6)
