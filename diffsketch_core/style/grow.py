"""Function-preserving growth of a sketch student, so a larger student starts from a trained one instead of from
scratch: distilling HED took hours of CPU, and a larger network trained from zero would have to repeat them before
it could pass the small one.

`deepen`: more residual blocks per level. A new block is appended at the end of its level with its second conv
at zero (as every fresh _Residual starts), so it passes its input through: relu(x + 0) = x, since a level's
stream is already the output of a ReLU.

`widen` (Net2WiderNet, Chen et al. 2016): more channels per level. Each level of the student keeps one channel
map: its first `old` channels are the trained ones and every new channel copies a randomly chosen trained channel
of the same level (the same map for the level's residual stream, its blocks, its lateral and its decoder mix, so
additions line up). A layer reading a copied channel splits the original input weight between the copies with
random positive fractions that sum to one: the widened network computes exactly what the trained one did, and the
copies get different gradients, so they drift apart in training instead of staying twins.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import BadInputError
from ..extractors.student import SketchStudent


def _channel_map(old: int, new: int, g: torch.Generator) -> torch.Tensor:
    extra = torch.randint(0, old, (new - old,), generator=g)
    return torch.cat([torch.arange(old), extra])


def _fractions(mapping: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Per new channel, its share of the original channel's outgoing weight (shares of one original sum to 1)."""
    raw = 1.0 + 0.5 * (torch.rand(len(mapping), generator=g) - 0.5)
    total = torch.zeros(int(mapping.max()) + 1).index_add_(0, mapping, raw)
    return raw / total[mapping]


def _widen_conv(conv: nn.Conv2d, into: tuple[torch.Tensor, torch.Tensor], out: torch.Tensor) -> nn.Conv2d:
    in_map, share = into
    new = nn.Conv2d(len(in_map), len(out), conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None)
    with torch.no_grad():
        new.weight.copy_(conv.weight[out][:, in_map] * share[None, :, None, None])
        if conv.bias is not None:
            new.bias.copy_(conv.bias[out])
    return new


def _grown(old: tuple[int, ...], new: tuple[int, ...], what: str) -> tuple[int, ...]:
    new = tuple(int(v) for v in new)
    if len(new) != len(old) or any(n < o for n, o in zip(new, old)):
        raise BadInputError(f"{what} per level, each at least the old one: {old} -> {new}.")
    return new


def check_widths(model: SketchStudent, widths: tuple[int, ...]) -> tuple[int, ...]:
    """`widths` as ints when `model` can be widened to them (one per level, each at least the old one)."""
    return _grown(tuple(model.config.widths), widths, "Widening needs one width")


def widen(model: SketchStudent, widths: tuple[int, ...], seed: int = 0) -> SketchStudent:
    """A student with `widths` channels per level computing the same function as `model` (same depth, blocks
    and head; every width at least the old one)."""
    old = tuple(model.config.widths)
    widths = check_widths(model, widths)
    g = torch.Generator().manual_seed(seed)
    maps = [_channel_map(o, w, g) for o, w in zip(old, widths)]
    reads = [(m, _fractions(m, g)) for m in maps]  # how a layer reads level i: which channel, what share
    cfg = model.config
    wide = SketchStudent(widths=widths, blocks=tuple(cfg.blocks), head=cfg.head, in_channels=cfg.in_channels,
                         out_channels=cfg.out_channels)
    pixels = torch.arange(cfg.in_channels * 4)
    plain = (pixels, torch.ones(len(pixels)))
    for i, m in enumerate(maps):
        wide.downs[i] = _widen_conv(model.downs[i], plain if i == 0 else reads[i - 1], m)
        for blk_new, blk in zip(wide.stages[i], model.stages[i]):
            blk_new.conv1 = _widen_conv(blk.conv1, reads[i], m)
            blk_new.conv2 = _widen_conv(blk.conv2, reads[i], m)
    for i in range(len(maps) - 1):
        wide.lifts[i] = _widen_conv(model.lifts[i], reads[i + 1], maps[i])
        wide.mixes[i] = _widen_conv(model.mixes[i], reads[i], maps[i])
    head_in = (torch.cat([maps[0], old[0] + pixels]), torch.cat([reads[0][1], plain[1]]))  # [level 0, photo]
    head = torch.arange(cfg.head)
    wide.head1 = _widen_conv(model.head1, head_in, head)
    wide.head2.load_state_dict(model.head2.state_dict())
    return wide


def check_blocks(model: SketchStudent, blocks: tuple[int, ...]) -> tuple[int, ...]:
    """`blocks` as ints when `model` can be deepened to them (one count per level, each at least the old one)."""
    return _grown(tuple(model.config.blocks), blocks, "Deepening needs one block count")


def deepen(model: SketchStudent, blocks: tuple[int, ...]) -> SketchStudent:
    """A student with `blocks` residual blocks per level computing the same function as `model` (same widths and
    head; the trained blocks first in each level, then new ones that start as the identity)."""
    blocks = check_blocks(model, blocks)
    cfg = model.config
    deep = SketchStudent(widths=tuple(cfg.widths), blocks=blocks, head=cfg.head, in_channels=cfg.in_channels,
                         out_channels=cfg.out_channels)
    keys = deep.load_state_dict(model.state_dict(), strict=False)
    assert not keys.unexpected_keys, keys.unexpected_keys  # every trained weight has its place
    return deep
