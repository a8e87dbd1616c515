"""The feature extraction a style uses, the same at training and at inference: its taps and timesteps, and one or
more feature sources ("buckets", GATE section 4.3), each a FeatureExtractor with its own techniques.

Without amalgamation there is one bucket with every technique the style asked for (ControlNet, LoRA and/or
IP-Adapter at once). With amalgamation the buckets are: plain; ControlNet alone; LoRA alone; IP-Adapter alone; and
`extra_seeds` plain buckets with other extraction noise (GATE's seed buckets). The generator's weight assigners
(style/generator.py) mix them per channel, learned with the style. style.json records the buckets, so Photo ->
Sketch rebuilds exactly this.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace

import numpy as np
import torch
from PIL import Image

from ..diffusion.backbone import Backbone
from ..diffusion.controlnet import Control, control_tensor, load_controlnet
from ..diffusion.features import FeatureBundle, FeatureExtractor
from ..diffusion.ip_adapter import IPAdapter, load_ip_adapter
from ..diffusion.lora import LoRA, load_lora
from ..diffusion.sampling import stream_seed
from ..errors import BadInputError

BUCKET_STREAM = 100  # bucket k's noise streams are the plain ones + k * BUCKET_STREAM


def load_control(spec: dict | None, backbone: Backbone, cache: dict | None = None) -> Control | None:
    if not spec:
        return None
    from ..extractors import METHODS, needs

    if spec["image"] not in METHODS:
        raise BadInputError(f"Unknown control-image extractor {spec['image']!r}; choose one of {', '.join(METHODS)}.")
    missing = needs(spec["image"])
    if missing:
        raise BadInputError(f"The control image needs the {spec['image']} extractor: {missing}")
    cache = {} if cache is None else cache
    if spec["controlnet"] not in cache:
        cache[spec["controlnet"]] = load_controlnet(spec["controlnet"], backbone)
    return Control(cache[spec["controlnet"]], spec["controlnet"], float(spec.get("scale", 1.0)),
                   int(spec.get("steps", 0)))


def load_lora_spec(spec: dict | None) -> tuple[LoRA | None, float]:
    return (load_lora(spec["source"]), float(spec.get("scale", 1.0))) if spec else (None, 1.0)


def load_ip_spec(spec: dict | None, backbone: Backbone, cache: dict) -> IPAdapter | None:
    """A bucket's IP-Adapter (issue 16: the photo's own CLIP image embedding steers the extraction forward)."""
    if not spec:
        return None
    key = ("ip-adapter", spec["source"])  # the cache also holds ControlNets by source; "tiny" names both
    if key not in cache:
        cache[key] = load_ip_adapter(spec["source"], backbone)
    return replace(cache[key], scale=float(spec.get("scale", 1.0)))


def make_control_image(image: Image.Image, method: str, res: int) -> torch.Tensor:
    """(1, 3, res, res) control image of a photo stretched to the square training size: the extractor's edges,
    white on black."""
    from ..extractors import extract_sketch

    square = image.convert("RGB").resize((res, res), Image.Resampling.BICUBIC)
    return control_tensor(extract_sketch(square, method, resolution=None).image, (res, res))


def bucket_specs(control: dict | None, lora: dict | None, amalgamate: bool = False, extra_seeds: int = 0,
                 ip_adapter: dict | None = None) -> list[dict]:
    ip = {"ip_adapter": ip_adapter} if ip_adapter else {}  # styles without one keep their old bucket records
    if not amalgamate:
        return [{"control": control, "lora": lora, "seed_offset": 0} | ip]
    buckets = [{"control": None, "lora": None, "seed_offset": 0}]
    if control:
        buckets.append({"control": control, "lora": None, "seed_offset": 0})
    if lora:
        buckets.append({"control": None, "lora": lora, "seed_offset": 0})
    if ip:
        buckets.append({"control": None, "lora": None, "seed_offset": 0} | ip)
    buckets += [{"control": None, "lora": None, "seed_offset": k} for k in range(1, int(extra_seeds) + 1)]
    if len(buckets) < 2:
        raise BadInputError("Feature amalgamation needs at least two feature sources: a ControlNet, a LoRA, an "
                            "IP-Adapter or extra seeds.")
    return buckets


class StyleExtraction:
    def __init__(self, backbone: Backbone, taps, timesteps, buckets: list[dict], max_batch: int = 26):
        self.bb, self.buckets = backbone, buckets
        cache: dict = {}
        self.extractors, self.ip_adapters = [], []
        for spec in buckets:
            self.ip_adapters.append(load_ip_spec(spec.get("ip_adapter"), backbone, cache))
            control = load_control(spec["control"], backbone, cache)
            if control is not None and max(timesteps) + control.steps >= 1000:
                raise BadInputError(f"ControlNet steps ({control.steps}) above the largest timestep "
                                    f"({max(timesteps)}) leave the 1000-step schedule.")
            lora, scale = load_lora_spec(spec["lora"])
            self.extractors.append(FeatureExtractor(backbone, taps=taps, timesteps=timesteps, max_batch=max_batch,
                                                    control=control, lora=lora, lora_scale=scale))

    @property
    def main(self) -> FeatureExtractor:
        return self.extractors[0]

    def _unet(self, z0, cond, uncond, seed: int, stream: int, index: int, pictures) -> list:
        """Every bucket's UNet features. pictures: PIL images the control images are made from (lazily)."""
        out, controls = [], {}
        for spec, ex, ip in zip(self.buckets, self.extractors, self.ip_adapters):
            image = None
            if spec["control"]:
                method = spec["control"]["image"]
                if method not in controls:
                    res = z0.shape[-1] * self.bb.vae_scale_factor
                    controls[method] = torch.cat([make_control_image(p, method, res) for p in pictures()])
                image = controls[method]
            s = stream_seed(seed, stream + BUCKET_STREAM * spec["seed_offset"], index)
            rows = (2 if uncond is not None else 1) * len(ex.timesteps)  # UNet rows per image, image-major
            with ip.applied(self.bb.unet, ip.embed(pictures()), rows) if ip is not None else nullcontext():
                out.append(ex.unet_features(z0, cond, uncond, seed=s, control_image=image))
        return out

    @torch.no_grad()
    def photo(self, x: torch.Tensor, image: Image.Image, cond, uncond, seed: int, stream: int = 0) -> FeatureBundle:
        """A real photo x (1, 3, res, res) in [-1, 1] (and the PIL image its control image is made from)."""
        z0 = self.main.encode(x)
        unets = self._unet(z0, cond, uncond, seed, stream, 0, lambda: [image])
        return FeatureBundle(unets[0], self.main.vae_features(z0), z0, unets[1:])

    @torch.no_grad()
    def samples(self, z0: torch.Tensor, cond, uncond, seed: int, stream: int, index: int) -> FeatureBundle:
        """Generated latents: control images from their own VAE decodes, as a photo's at inference."""
        vae = self.main.vae_features(z0)

        def pictures():
            pics = ((vae.rgb.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
            return [Image.fromarray(np.ascontiguousarray(p)) for p in pics]

        unets = self._unet(z0, cond, uncond, seed, stream, index, pictures)
        return FeatureBundle(unets[0], vae, z0, unets[1:])
