"""The DiffSketch sketch generator: two-level aggregation of UNet decoder features over timesteps, then a
feature-fusing decoder (FFD) over the VAE-decoder features up to image resolution (DESIGN.md section 4).

Fixed against the official code: level 2 has a slot for the upsampled level-1 output (the official forward
silently drops it), every layer is a registered module (the official VAE-branch convs were plain lists and never
trained), and the output is a sigmoid in [0, 1] (1 = paper).

Widths come from the backbone (`GeneratorConfig`-style arguments below); defaults are SD-1.x's:
  level 1: up_blocks 0-2 (9 taps: 1280 x 6, 640 x 3) resized to latent/2, projected to 960;
  level 2: up_blocks 3 (3 taps: 320 x 3) at latent size plus the level-1 slot, projected to 384;
  [uncond, cond] halves concatenated -> 768 channels at latent size;
  FFD: 64 -> 128 -> 256 -> 512 px with VAE features reduced to 16/16/8/8 channels per tap.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..diffusion.features import FeatureBundle


def _gn(channels: int, groups: int) -> nn.GroupNorm:
    g = min(groups, channels)
    while channels % g:
        g -= 1
    return nn.GroupNorm(g, channels)


class Bottleneck(nn.Module):
    """detectron2's BottleneckBlock (1x1 -> 3x3 -> 1x1 with GroupNorm, projection shortcut), as Diffusion
    Hyperfeatures uses it: one per decoder layer, shared across timesteps."""

    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        mid = max(cout // 4, 1)
        self.branch = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), _gn(mid, groups), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1, bias=False), _gn(mid, groups), nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 1, bias=False), _gn(cout, groups))
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), _gn(cout, groups))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.branch(x) + self.shortcut(x))


class Aggregator(nn.Module):
    """sum over (layer, timestep) slots of softmax(w)[slot] * Bottleneck_layer(feature[slot]), plus optional
    extra slots (already-projected maps, e.g. the level-1 output) with their own bottleneck and weight."""

    def __init__(self, in_channels: list[int], num_timesteps: int, out_channels: int, groups: int,
                 extra_channels: list[int] = ()):
        super().__init__()
        self.num_timesteps = num_timesteps
        self.layers = nn.ModuleList(Bottleneck(c, out_channels, groups) for c in in_channels)
        self.extras = nn.ModuleList(Bottleneck(c, out_channels, groups) for c in extra_channels)
        self.mixing = nn.Parameter(torch.ones(len(in_channels) * num_timesteps + len(extra_channels)))

    def forward(self, feats: list[torch.Tensor], extras: list[torch.Tensor] = ()) -> torch.Tensor:
        """feats[l]: (N, T, C_l, H, W) for each layer; extras[k]: (N, C_k, H, W)."""
        w = self.mixing.softmax(0)
        out, slot = 0, 0
        for bottleneck, f in zip(self.layers, feats):
            n, t = f.shape[:2]
            projected = bottleneck(f.flatten(0, 1)).unflatten(0, (n, t))  # one call for all timesteps
            out = out + (w[slot:slot + t].view(1, t, 1, 1, 1) * projected).sum(1)
            slot += t
        for bottleneck, e in zip(self.extras, extras):
            out = out + w[slot] * bottleneck(e)
            slot += 1
        return out


class WeightAssigner(nn.Module):
    """GATE's weight assigner (section 4.3): per-image, per-channel logits of one feature source,
    conv 3x3 -> ReLU -> GroupNorm -> global average pool -> linear. The last layer starts at zero, so training
    starts from the plain average of the sources."""

    def __init__(self, channels: int, hidden: int, groups: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU(inplace=True), _gn(hidden, groups),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(hidden, channels)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def amalgamate(assigner: WeightAssigner, sources: list[torch.Tensor]) -> torch.Tensor:
    """sources: K maps (N, C, H, W) of one tap -> their per-channel softmax-weighted sum (N, C, H, W)."""
    logits = torch.stack([assigner(s) for s in sources])  # (K, N, C)
    w = logits.softmax(0)[..., None, None]
    return (w * torch.stack(sources)).sum(0)


def _conv_block(cin: int, cout: int, groups: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), _gn(cout, groups), nn.GELU())


class _Fuse(nn.Module):
    """Nearest x2 upsample -> 3x3 conv -> GroupNorm -> GELU."""

    def __init__(self, cin: int, cout: int, groups: int = 16):
        super().__init__()
        self.block = _conv_block(cin, cout, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(F.interpolate(x, scale_factor=2, mode="nearest"))


class SketchGenerator(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, unet_channels: tuple[int, ...] = (1280,) * 6 + (640,) * 3 + (320,) * 3,
                 unet_taps: tuple[str, ...] = (), vae_channels: tuple[int, ...] = (512,) * 8 + (256,) * 3 + (128,) * 3,
                 vae_taps: tuple[str, ...] = (), timesteps: tuple[int, ...] = (),
                 num_branches: int = 2, level1_layers: int = 9, level1_dim: int = 960, level2_dim: int = 384,
                 level1_groups: int = 16, level2_groups: int = 32, vae_reduce: tuple[int, ...] = (16, 16, 8, 8),
                 ffd_widths: tuple[int, ...] = (256, 128, 64), backbone: dict | None = None,
                 num_buckets: int = 1, assigner_dim: int = 128):
        super().__init__()
        t = len(timesteps)
        if t == 0 or len(unet_channels) != len(unet_taps) or len(vae_channels) != len(vae_taps):
            raise ValueError("SketchGenerator needs timesteps and one channel count per UNet and VAE tap")
        # feature amalgamation: one weight assigner per tap mixes the buckets before aggregation
        self.assigners = nn.ModuleList(WeightAssigner(c, assigner_dim, level1_groups) for c in unet_channels) \
            if num_buckets > 1 else None
        lo, hi = list(unet_channels[:level1_layers]), list(unet_channels[level1_layers:])
        # level 1 takes the taps below latent resolution, level 2 those at it (either may be empty: any tap
        # set from the catalogue, DESIGN.md section 4); level 2 always has the level-1 slot when level 1 exists
        self.level1 = Aggregator(lo, t, level1_dim, level1_groups) if lo else None
        self.level2 = Aggregator(hi, t, level2_dim, level2_groups, extra_channels=[level1_dim] if lo else [])
        # VAE taps by stage: mid (2) + up_blocks[0] (3) at latent size, then 3 per doubling (SD layout)
        self.stages = [list(range(0, 5)), list(range(5, 8)), list(range(8, 11)), list(range(11, 14))]
        self.reduce = nn.ModuleList()
        self.vae_blocks = nn.ModuleList()
        for s, idx in enumerate(self.stages):
            for i in idx:
                self.reduce.append(nn.Conv2d(vae_channels[i], vae_reduce[s], 1))
                self.vae_blocks.append(_conv_block(vae_reduce[s], vae_reduce[s], 4))
        cin = num_branches * level2_dim + 5 * vae_reduce[0]
        self.fuse = nn.ModuleList()
        for s, width in enumerate(ffd_widths):
            self.fuse.append(_Fuse(cin, width))
            cin = width + len(self.stages[s + 1]) * vae_reduce[s + 1]
        self.final = nn.Sequential(_conv_block(cin + 3, ffd_widths[-1], 4), nn.Conv2d(ffd_widths[-1], 1, 1))

    def _mixed(self, features: FeatureBundle) -> list[torch.Tensor]:
        """Each tap's (B, G, T, C, H, W) map: the bundle's, or its buckets amalgamated."""
        cfg = self.config
        sources = [features.unet] + list(features.buckets)
        if len(sources) != cfg.num_buckets:
            raise ValueError(f"This generator mixes {cfg.num_buckets} feature source(s), got {len(sources)}")
        if self.assigners is None:
            return [features.unet.maps[name].float() for name in cfg.unet_taps]
        out = []
        for assigner, name in zip(self.assigners, cfg.unet_taps):
            maps = [src.maps[name].float() for src in sources]
            shape = maps[0].shape
            out.append(amalgamate(assigner, [m.flatten(0, 2) for m in maps]).view(shape))
        return out

    def _unet_aggregate(self, feats: list[torch.Tensor], top: tuple[int, int]) -> torch.Tensor:
        """maps at up to latent size `top` -> (B, G * level2_dim, *top)."""
        cfg = self.config
        b, g = feats[0].shape[:2]
        half = (top[0] // 2, top[1] // 2)

        def at(f: torch.Tensor, size) -> torch.Tensor:
            f = f.flatten(0, 1)  # (B*G, T, C, H, W)
            if f.shape[-2:] == size:
                return f
            n, t = f.shape[:2]
            return F.interpolate(f.flatten(0, 1), size=size, mode="bilinear").unflatten(0, (n, t))

        extras = []
        if self.level1 is not None:
            lvl1 = self.level1([at(f, half) for f in feats[:cfg.level1_layers]])
            extras = [F.interpolate(lvl1, size=top, mode="bilinear")]
        lvl2 = self.level2([at(f, top) for f in feats[cfg.level1_layers:]], extras)
        return lvl2.unflatten(0, (b, g)).flatten(1, 2)  # [uncond, cond] halves on channels

    def forward(self, features: FeatureBundle) -> torch.Tensor:
        """Sketch (B, 1, H, W) in [0, 1] (1 = paper) at the VAE's output resolution."""
        if features.vae is None:
            raise ValueError("The generator needs VAE-decoder features (extract with with_vae=True)")
        x = self._unet_aggregate(self._mixed(features), tuple(features.latents.shape[-2:]))
        vae = [features.vae.maps[name].float() for name in self.config.vae_taps]
        reduced = [blk(red(f)) for red, blk, f in zip(self.reduce, self.vae_blocks, vae)]
        for s, fuse in enumerate(self.fuse):
            x = torch.cat([x] + [reduced[i] for i in self.stages[s]], 1)
            x = fuse(x)
        x = torch.cat([x] + [reduced[i] for i in self.stages[-1]] + [features.vae.rgb.float()], 1)
        return torch.sigmoid(self.final(x))


def generator_for(backbone, timesteps, features: FeatureBundle | None = None, taps=None, **overrides) -> SketchGenerator:
    """A generator sized for `backbone` and a UNet tap set (default: DiffSketch's 12 decoder resnets; any taps of
    the catalogue in diffusion/taps.py): widths read off a meta-device dry run, taps below latent resolution to
    level 1 and at it to level 2, projection widths scaled down for small (test) backbones."""
    from ..diffusion.features import decoder_taps, vae_decoder_taps
    from ..diffusion.taps import describe

    unet, vae = backbone.unet, backbone.vae
    latent = backbone.resolution // backbone.vae_scale_factor
    shapes = describe(unet, list(taps) if taps is not None else decoder_taps(unet), (latent, latent))
    lo = [n for n, (_c, h, _w) in shapes.items() if h < latent]
    hi = [n for n, (_c, h, _w) in shapes.items() if h >= latent]
    unet_taps = lo + hi
    unet_ch = [shapes[n][0] for n in unet_taps]
    vae_taps = vae_decoder_taps(vae)
    vae_ch = [vae.get_submodule(n).conv2.out_channels for n in vae_taps]
    small = max(unet_ch) < 320
    cfg = dict(unet_channels=tuple(unet_ch), unet_taps=tuple(unet_taps), vae_channels=tuple(vae_ch),
               vae_taps=tuple(vae_taps), timesteps=tuple(int(t) for t in timesteps), backbone=backbone.fingerprint,
               level1_layers=len(lo))
    if small:
        cfg |= dict(level1_dim=32, level2_dim=16, level1_groups=4, level2_groups=4, vae_reduce=(4, 4, 4, 4),
                    ffd_widths=(16, 16, 8), assigner_dim=16)
    cfg |= overrides
    return SketchGenerator(**cfg)
