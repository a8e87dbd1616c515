"""Mirror averaging (diffsketch_core/mirror.py): the mean of a pass and a mirrored pass, one batch of a network or
of its ONNX Runtime graph."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from diffsketch_core import onnx_runtime
from diffsketch_core.mirror import average, averaged_sketcher


class _TwoInputs(nn.Module):
    """A network that is not mirror-symmetric (a one-sided kernel), with two image inputs of different sizes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(3, 1, 3, padding=1)
        self.b = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, small: torch.Tensor, big: torch.Tensor) -> torch.Tensor:
        up = nn.functional.interpolate(self.a(small), size=big.shape[-2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(up + self.b(big))


def _by_hand(net, *xs):
    return (net(*xs) + net(*(x.flip(-1) for x in xs)).flip(-1)) / 2


def test_it_is_the_mean_of_the_pass_and_the_mirrored_pass_mirrored_back():
    net = _TwoInputs().eval()
    small, big = torch.rand(3, 3, 8, 12), torch.rand(3, 3, 16, 24)
    with torch.no_grad():
        out = average(net, small, big)
        torch.testing.assert_close(out, _by_hand(net, small, big))
        assert not torch.allclose(out, net(small, big), atol=1e-3)  # the network is not symmetric: it changes
        # the result is mirror-symmetric: the mirrored photo gets the mirrored sketch
        torch.testing.assert_close(average(net, small.flip(-1), big.flip(-1)), out.flip(-1))


def test_a_symmetric_network_is_left_as_it_is():
    blur = nn.AvgPool2d(3, 1, 1)
    x = torch.rand(2, 1, 9, 7)
    torch.testing.assert_close(average(blur, x), blur(x))


@pytest.mark.skipif(not onnx_runtime.wanted(), reason="onnx / onnxruntime not installed")
def test_it_runs_around_an_onnx_graph_with_free_batch_and_sizes():
    net = _TwoInputs().eval()
    free = {"small": {0: "b", 2: "h", 3: "w"}, "big": {0: "b", 2: "H", 3: "W"}, "out": {0: "b", 2: "H", 3: "W"}}
    run = onnx_runtime.OnnxModule(net, [torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 16, 16)],
                                  ["small", "big"], free, threads=1)
    for b, (h, w) in [(1, (8, 12)), (3, (5, 9))]:
        small, big = torch.rand(b, 3, h, w), torch.rand(b, 3, 2 * h, 2 * w)
        with torch.no_grad():
            torch.testing.assert_close(average(run, small, big), _by_hand(net, small, big), atol=1e-5, rtol=0)


def leftish(img: Image.Image) -> np.ndarray:
    """A sketcher that is not mirror-symmetric: half the red channel plus a ramp from 0.5 at the left to 0; its
    mirror average is half the red channel plus 0.25 (test_student.py's --mirror-teacher test uses it too)."""
    red = np.asarray(img, dtype=np.float32)[..., 0] / 255
    return red / 2 + np.linspace(0.5, 0, img.width, dtype=np.float32)[None]


def test_a_sketcher_is_averaged_with_its_mirrored_photo_mirrored_back():
    rgb = np.random.default_rng(0).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    img = Image.fromarray(rgb)
    out = averaged_sketcher(leftish)(img)
    red = rgb[..., 0].astype(np.float32) / 255
    np.testing.assert_allclose(out, red / 2 + 0.25, atol=1e-6)  # the ramp and its mirror average to 0.25
    assert out.shape == (6, 9) and out.dtype == np.float32
