"""The DiffSketch generator family sized for CNN features (issue 13): two-level aggregation, then a
feature-fusing decoder up to the photo's own resolution.

  level 1: the deepest taps (VGG16 relu4_3 at 1/8, relu5_3 at 1/16), each 1x1-projected to `level1_dim`, brought
           to the 1/8 grid and mixed by softmax weights (DiffSketch's aggregation), then a 3x3 block;
  level 2: the middle tap (relu3_3 at 1/4) projected to `level2_dim`, mixed with the upsampled level-1 output
           (its own slot and weight), then a 3x3 block;
  decoder: x2 upsample, concatenate the reduced shallow taps (relu2_2 at 1/2, optionally relu1_2), 3x3 blocks;
  fusion:  upsample to the output size and fuse with features computed from the RGB image itself at full
           resolution (in place of SD's VAE-decoder features), 3x3 block, 1x1, sigmoid (1 = paper).

Because the last stage runs at the image's size, the backbone can read a photo at 256 px while the sketch is
drawn at 512 px or at the photo's size.

Borders (CPU style version 2): every 3x3 convolution reflects at the border, here and in the backbone
(diffusion/cnn.py). With zero padding the RGB branch saw a black frame around every photo and VGG16 a frame of the
mean colour, so the network could tell where the border is; trained on an example whose photo has a dark scan band
at its right edge (BSDS500 train 100075: cols 476-480 at grey 35 against 92; about one BSDS500 photo in ten has
such a band on a given side, and the extractors draw it), a style learned "right border -> line" as a prior of
its own (measured: a flat grey photo came out with dark edges, right 0.50 against 0.82 in the middle; with
reflection it stays flat, and the lines left at a border are the photo's own). Version 1 styles (zero padding)
are refused on load: their weights expect the other border features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .generator import _conv_block, _gn

CNN_STYLE_VERSION = 2  # 2: reflected borders in the backbone and the generator (see above)


class _Project(nn.Sequential):
    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__(nn.Conv2d(cin, cout, 1, bias=False), _gn(cout, groups), nn.GELU())


def _to(x: torch.Tensor, size) -> torch.Tensor:
    return x if tuple(x.shape[-2:]) == tuple(size) else F.interpolate(x, size=tuple(size), mode="bilinear",
                                                                      align_corners=False)


class CNNSketchGenerator(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, tap_names: tuple[str, ...] = ("relu2", "relu3", "relu4", "relu5"),
                 tap_channels: tuple[int, ...] = (128, 256, 512, 512), level1_taps: int = 2, level2_taps: int = 1,
                 level1_dim: int = 128, level2_dim: int = 96, decoder_reduce: int = 32,
                 decoder_widths: tuple[int, ...] = (48,), rgb_width: int = 16, final_width: int = 24,
                 groups: int = 8, work_side: int = 256, backbone: dict | None = None, version: int = 1):
        super().__init__()
        # a config without "version" was saved by version 1: loading it goes through here (load_style says why)
        if version < CNN_STYLE_VERSION:
            raise ValueError(f"this CPU style was made by an older version (CPU style version {version}: VGG16 read "
                             "with zero-padded borders); this version reads borders reflected, so the style would "
                             "draw wrong sketches. Train it again from its photo and sketch.")
        if version > CNN_STYLE_VERSION:
            raise ValueError(f"this CPU style was saved by a newer version (CPU style version {version}); please "
                             "update.")
        n = len(tap_names)
        if n != len(tap_channels) or level1_taps + level2_taps > n or level1_taps < 1 or level2_taps < 1:
            raise ValueError("CNNSketchGenerator needs one channel count per tap and at least one tap per level")
        if len(decoder_widths) != n - level1_taps - level2_taps:
            raise ValueError("one decoder width per shallow tap (the taps below level 2)")
        deep = list(tap_channels[n - level1_taps:])
        mid = list(tap_channels[n - level1_taps - level2_taps:n - level1_taps])
        shallow = list(tap_channels[:n - level1_taps - level2_taps])
        self.level1_proj = nn.ModuleList(_Project(c, level1_dim, groups) for c in deep)
        self.level1_mix = nn.Parameter(torch.ones(len(deep)))
        self.level1_block = _conv_block(level1_dim, level1_dim, groups)
        self.level2_proj = nn.ModuleList(_Project(c, level2_dim, groups) for c in mid + [level1_dim])
        self.level2_mix = nn.Parameter(torch.ones(len(mid) + 1))
        self.level2_block = _conv_block(level2_dim, level2_dim, groups)
        # shallow taps are consumed from the coarsest (closest to level 2) to the finest
        self.reduce = nn.ModuleList(_Project(c, decoder_reduce, groups) for c in reversed(shallow))
        self.decode = nn.ModuleList()
        cin = level2_dim
        for w in decoder_widths:
            self.decode.append(_conv_block(cin + decoder_reduce, w, groups))
            cin = w
        self.rgb = nn.Sequential(_conv_block(3, rgb_width, 4), _conv_block(rgb_width, rgb_width, 4))
        self.final = nn.Sequential(_conv_block(cin + rgb_width + 3, final_width, 4), nn.Conv2d(final_width, 1, 1))
        for m in self.modules():  # the shared conv block pads with zeros; the mode is a per-layer attribute
            if isinstance(m, nn.Conv2d) and m.padding != (0, 0):
                m.padding_mode = "reflect"

    @property
    def taps(self) -> tuple[str, ...]:
        return tuple(self.config.tap_names)

    def forward(self, feats: dict[str, torch.Tensor], rgb: torch.Tensor) -> torch.Tensor:
        """feats: the backbone's taps for the photo read at work size; rgb: (B, 3, H, W) in [0, 1] at the output
        size. Returns the sketch (B, 1, H, W) in [0, 1], 1 = paper."""
        cfg = self.config
        maps = [feats[t].float() for t in cfg.tap_names]
        n = len(maps)
        deep = maps[n - cfg.level1_taps:]
        mid = maps[n - cfg.level1_taps - cfg.level2_taps:n - cfg.level1_taps]
        shallow = maps[:n - cfg.level1_taps - cfg.level2_taps]
        size1 = deep[0].shape[-2:]
        w1 = self.level1_mix.softmax(0)
        x = sum(w1[i] * _to(p(f), size1) for i, (p, f) in enumerate(zip(self.level1_proj, deep)))
        x = self.level1_block(x)
        size2 = mid[0].shape[-2:]
        w2 = self.level2_mix.softmax(0)
        x = sum(w2[i] * p(_to(f, size2)) for i, (p, f) in enumerate(zip(self.level2_proj, mid + [x])))
        x = self.level2_block(x)
        for red, block, f in zip(self.reduce, self.decode, reversed(shallow)):
            x = block(torch.cat([_to(x, f.shape[-2:]), red(f)], 1))
        rgb = rgb.float()
        x = torch.cat([_to(x, rgb.shape[-2:]), self.rgb(rgb), rgb], 1)
        return torch.sigmoid(self.final(x))


def cnn_generator_for(backbone, **overrides) -> CNNSketchGenerator:
    """A generator sized for `backbone` (tap widths read off it), smaller for the tiny test CNN."""
    taps = ("relu2", "relu3", "relu4", "relu5")
    cfg = dict(tap_names=taps, tap_channels=tuple(backbone.channels[t] for t in taps),
               work_side=backbone.work_side, backbone=backbone.fingerprint,
               version=CNN_STYLE_VERSION)
    if max(backbone.channels.values()) < 64:
        cfg |= dict(level1_dim=16, level2_dim=16, decoder_reduce=8, decoder_widths=(8,), rgb_width=4,
                    final_width=8, groups=4)
    cfg |= overrides
    return CNNSketchGenerator(**cfg)
