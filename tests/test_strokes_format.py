import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from conftest import SHARED
from diffsketch_core.errors import BadInputError
from diffsketch_core.strokes import format as fmt
from diffsketch_core.strokes.format import polylines_to_stroke3, stroke3_to_polylines
from diffsketch_core.strokes.raster import render
from diffsketch_core.strokes.svg import to_svg

NPZ = SHARED / "data" / "quickdraw" / "spg_stroke3" / "apple.npz"
NDJSON = SHARED / "data" / "quickdraw" / "spg_raw" / "apple_raw.ndjson"
needs_data = pytest.mark.skipif(not NPZ.is_file(), reason="needs ../shared/data/quickdraw")


@pytest.fixture
def square():
    """Two strokes: a unit square outline and a diagonal."""
    return fmt.polylines_to_stroke3([np.array([[10, 10], [50, 10], [50, 50], [10, 50], [10, 10]]),
                                     np.array([[10, 10], [50, 50]])])


@needs_data
def test_npz_polylines_stroke3_round_trip():
    sketches = fmt.load_npz(NPZ, "test")
    assert len(sketches) == 100
    for s in sketches[:50]:
        back = fmt.polylines_to_stroke3(fmt.stroke3_to_polylines(s))
        np.testing.assert_allclose(back, s, atol=1e-4)


def test_save_and_load_npz(tmp_path, square):
    fmt.save_npz(tmp_path / "x.npz", [square, square * [1, 2, 1]], split="test")
    loaded = fmt.load_npz(tmp_path / "x.npz", "test")
    assert len(loaded) == 2 and np.allclose(loaded[0], square)


def test_fixed_length_round_trip_and_end_state(square):
    offsets, pen, n = fmt.to_fixed(square, 16, scale=20.0)
    assert offsets.shape == (16, 2) and n == len(square)
    assert (pen[n:] == fmt.END).all() and (offsets[n:] == 0).all() and pen[n - 1] == fmt.LIFT
    np.testing.assert_allclose(fmt.from_fixed(offsets, pen, 20.0), square, atol=1e-5)


def test_decoding_stops_where_the_final_end_run_begins():
    offsets = np.ones((10, 2), np.float32)
    pen = np.array([0, 0, 1, 0, 2, 0, 1, 2, 2, 2])  # a stray END at 4 lifts the pen; the sketch ends at 7
    s = fmt.from_fixed(offsets, pen, 1.0)
    assert len(s) == 7 and s[-1, 2] == 1 and s[4, 2] == 1 and s[3, 2] == 0
    assert len(fmt.from_fixed(offsets, np.full(10, fmt.END), 1.0)) == 2  # nothing drawn: a minimal line


def test_long_sketch_is_simplified_not_dropped():
    t = np.linspace(0, 2 * np.pi, 400)
    circle = np.column_stack([100 * np.cos(t), 100 * np.sin(t)])
    s = fmt.polylines_to_stroke3([circle])
    offsets, pen, n = fmt.to_fixed(s, 64, scale=10.0)
    assert n <= 64
    back = fmt.stroke3_to_polylines(fmt.from_fixed(offsets, pen, 10.0))[0]
    assert np.abs(np.hypot(*back.T) - 100).max() < 5  # still a circle of radius 100


def test_offset_scale_uses_offsets_only(square):
    assert fmt.offset_scale([square]) == pytest.approx(square[:, :2].std())


@pytest.mark.parametrize("bad, match", [
    (np.zeros((0, 3)), "0 point"), (np.zeros((1, 3)), "1 point"), (np.zeros((5, 2)), "shape"),
    (np.array([[0, 0, 0], [np.nan, 1, 1]]), "NaN"), (np.array([[0, 0, 0], [np.inf, 1, 1]]), "NaN"),
])
def test_bad_sketches_are_refused(bad, match):
    with pytest.raises(BadInputError, match=match):
        fmt.validate_stroke3(bad)


def test_corrupt_and_wrong_keyed_npz(tmp_path, square):
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(BadInputError, match="not a readable"):
        fmt.load_npz(tmp_path / "junk.npz")
    fmt.save_npz(tmp_path / "ok.npz", [square], split="valid")
    with pytest.raises(BadInputError, match="no 'train' array.*valid"):
        fmt.load_npz(tmp_path / "ok.npz", "train")
    np.savez(tmp_path / "scalar.npz", train=np.float32(3))  # was a TypeError (iterating a 0-d array)
    with pytest.raises(BadInputError, match="holds one value"):
        fmt.load_npz(tmp_path / "scalar.npz")


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_npz_with_foreign_pickle_is_refused(tmp_path):
    arr = np.empty(1, dtype=object)
    arr[0] = _Evil()
    np.savez(tmp_path / "evil.npz", train=arr)
    with pytest.raises(BadInputError, match="refusing"):
        fmt.load_npz(tmp_path / "evil.npz")


@needs_data
def test_ndjson_reads_raw_and_counts_malformed_lines(tmp_path):
    good = NDJSON.read_text().splitlines()[:3]
    mixed = tmp_path / "mixed.ndjson"
    mixed.write_text("\n".join(good + ["{not json", json.dumps({"drawing": [[[1, 2], [3]]]}), json.dumps({"x": 1})]))
    sketches, skipped = fmt.load_ndjson(mixed)
    assert len(sketches) == 3 and skipped == 3
    raw, _ = fmt.load_ndjson(mixed, epsilon=0)
    assert all(len(r) >= len(s) for r, s in zip(raw, sketches))


def test_ndjson_simplified_format(tmp_path):
    line = {"word": "line", "drawing": [[[0, 10, 20], [0, 0, 0]], [[5, 5], [0, 9]]]}
    path = tmp_path / "s.ndjson"
    path.write_text(json.dumps(line))
    (s,), skipped = fmt.load_ndjson(path)
    assert skipped == 0 and s[:, 2].sum() == 2


def test_rdp_keeps_corners_drops_collinear():
    pts = np.array([[0, 0], [1, 0], [2, 0], [3, 0], [3, 1], [3, 2]], float)
    np.testing.assert_array_equal(fmt.rdp(pts, 0.1), [[0, 0], [3, 0], [3, 2]])


def test_svg_has_one_path_per_stroke(square):
    for animated in (False, True):
        root = ET.fromstring(to_svg(square, animated=animated))
        paths = root.findall(".//{http://www.w3.org/2000/svg}path")
        assert len(paths) == 2
    assert "@keyframes" in to_svg(square, animated=True)


def test_render_draws_ink_and_respects_size(square):
    img = render(square, size=100, line_width=3)
    assert img.shape == (100, 100) and img.dtype == np.uint8
    assert (img < 128).mean() > 0.03 and img[0, 0] == 255


def test_decoding_drops_one_point_specks_and_keeps_everything_else_in_place():
    offsets = np.array([[0, 0], [10, 0], [5, 5], [0, 10], [10, 0], [3, 3], [0, 5]], np.float32)
    pen = np.array([fmt.DRAW, fmt.LIFT, fmt.LIFT, fmt.DRAW, fmt.LIFT, fmt.LIFT, fmt.END])  # point 2 is a lone dot
    s = fmt.from_fixed(offsets, pen, 1.0)
    polys = fmt.stroke3_to_polylines(s)
    assert [len(p) for p in polys] == [2, 2] and len(s) == 4
    np.testing.assert_allclose(polys[1], [[15, 15], [25, 15]])  # the second stroke did not move
    assert len(fmt.from_fixed(offsets, pen, 1.0, dots=True)) == 6


def _outline(n=99):
    t = np.linspace(0, 2 * np.pi, n - 10)
    body = np.column_stack([256 + 100 * np.sin(t), 270 - 100 * np.cos(t)])
    stem = np.column_stack([np.linspace(256, 262, 10), np.linspace(172, 130, 10)])
    return polylines_to_stroke3([body, stem])


def test_fit_length_keeps_as_many_points_as_fit_and_the_drawing():
    from diffsketch_core.strokes.distance import mean_point_distance
    from diffsketch_core.strokes.format import fit_length
    s = _outline(99)
    f = fit_length(s, 96)
    assert len(f) == 96 and mean_point_distance(s, f) < 0.1  # one RDP pass alone left ~50 points
    np.testing.assert_allclose(f[0, :2], s[0, :2])
    assert [len(p) for p in stroke3_to_polylines(f)][1] >= 2  # every stroke keeps its ends


def test_point_distance_and_turning():
    from diffsketch_core.strokes.distance import mean_point_distance, turning
    s = _outline(99)
    assert mean_point_distance(s, s) == 0
    moved = s.copy()
    moved[0, :2] += 1e-3
    assert mean_point_distance(s, moved) < 0.01
    t = [np.linspace(0, 2 * np.pi, n) for n in (20, 400)]
    coarse, fine = (polylines_to_stroke3([np.column_stack([np.cos(a), np.sin(a)])]) for a in t)
    assert abs(turning(coarse) - turning(fine)) < 0.05 * turning(fine)  # a smooth outline turns 360 deg, any points
    zig = fine.copy()
    zig[1:, :2] += np.random.default_rng(0).normal(0, 0.01, zig[1:, :2].shape)
    assert turning(zig) > 2 * turning(fine)
