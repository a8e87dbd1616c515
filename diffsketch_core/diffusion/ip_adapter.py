"""IP-Adapter conditioning of the extraction forward (GATE's list of content-shift suppressors; issue 16 part 3).

An IP-Adapter adds a second cross-attention to every text cross-attention of the UNet, attending to four tokens
projected from a CLIP image embedding. Fed with the embedding of the very image whose features are taken, it tells
the UNet what the photo looks like, so the reconstruction it imagines while denoising stays closer to the photo.
GATE's code lists it as a technique (an empty stub); this is our reading of how it plugs into noise-and-extract.

Loaded through diffusers' UNet-level IP-Adapter loading (`_load_ip_adapter_weights`: IP attention processors and
the image projection; no peft needed), only for the length of a `with` block: the UNet's processors, projection and
config are restored afterwards (the backbone is shared by every tab). Each UNet row gets its own image's embedding
(rows are ordered image-major, `rows_per_image` each, and repeat for GATE's guided steps).

`load_ip_adapter(source, backbone)` takes the hub id `h94/IP-Adapter` (its `models/` folder) or a local folder laid
out like it: `ip-adapter_sd15.safetensors` (the plain IP-Adapter: `image_proj.proj.*`, `ip_adapter.N.to_k_ip/to_v_ip`)
beside `image_encoder/` (a transformers CLIPVisionModelWithProjection, ViT-H/14 for SD 1.5); or "tiny": seeded random
weights for the demo backbone and tests (never a stand-in for real weights).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from PIL import Image

from .. import settings
from ..errors import BadInputError, MissingWeightsError
from .backbone import Backbone

TINY = "tiny"
HUB_SUBFOLDER = "models"
WEIGHT_NAME = "ip-adapter_sd15.safetensors"
ENCODER_FOLDER = "image_encoder"


@dataclass
class IPAdapter:
    state: dict[str, dict[str, torch.Tensor]]  # {"image_proj": {...}, "ip_adapter": {...}}, diffusers' layout
    encoder: torch.nn.Module  # CLIPVisionModelWithProjection
    processor: object  # CLIPImageProcessor
    source: str
    scale: float = 1.0

    @torch.no_grad()
    def embed(self, images: list[Image.Image]) -> torch.Tensor:
        """CLIP image embeddings (B, 1, E) of the images, as the IP-Adapter was trained on them."""
        device = next(self.encoder.parameters()).device
        pixels = self.processor(images=[i.convert("RGB") for i in images], return_tensors="pt").pixel_values
        return self.encoder(pixels.to(device, next(self.encoder.parameters()).dtype)).image_embeds.unsqueeze(1)

    @contextmanager
    def applied(self, unet: torch.nn.Module, embeds: torch.Tensor, rows_per_image: int):
        """Inside the block every UNet forward attends to the images' embeddings (embeds (B, 1, E)); row r of a
        batch (counted across forwards, so chunks and repeated passes line up) gets image (r // rows_per_image) % B."""
        saved = (dict(unet.attn_processors), unet.encoder_hid_proj, unet.config.encoder_hid_dim_type)
        seen = {"rows": 0}
        embeds = embeds.to(unet.device, unet.dtype)

        def add_image_embeds(_module, args, kwargs):
            x = args[0] if args else kwargs["sample"]
            rows = torch.arange(seen["rows"], seen["rows"] + x.shape[0]) // rows_per_image % embeds.shape[0]
            seen["rows"] += x.shape[0]
            extra = dict(kwargs.get("added_cond_kwargs") or {}, image_embeds=[embeds[rows.to(embeds.device)]])
            return args, dict(kwargs, added_cond_kwargs=extra)

        handle = None
        try:
            try:
                with _quiet_diffusers():  # its closing unet.to(dtype) warns on every call about fp32 modules (none)
                    unet._load_ip_adapter_weights([self.state], low_cpu_mem_usage=False)
            except (KeyError, RuntimeError) as exc:  # names or widths of another UNet
                raise BadInputError(f"IP-Adapter {self.source} does not fit the loaded backbone ({type(exc).__name__}: "
                                    f"{exc}); it must be made for it (ip-adapter_sd15 for SD 1.x).") from None
            for proc in unet.attn_processors.values():
                if hasattr(proc, "scale"):
                    proc.scale = [self.scale] * len(proc.scale)
            handle = unet.register_forward_pre_hook(add_image_embeds, with_kwargs=True)
            yield self
        finally:
            if handle is not None:
                handle.remove()
            unet.set_attn_processor(saved[0])
            unet.encoder_hid_proj = saved[1]
            unet.config.encoder_hid_dim_type = saved[2]  # diffusers sets it as an attribute too


@contextmanager
def _quiet_diffusers():
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)


def tiny_ip_adapter(unet: torch.nn.Module, seed: int = 0) -> IPAdapter:
    """A seeded random plain IP-Adapter for `unet` with a tiny CLIP image encoder, built in code (tests, demo)."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    width, dim = 8, unet.config.cross_attention_dim
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=32,
            patch_size=8, projection_dim=width))
        state = {"image_proj": {"proj.weight": torch.randn(4 * dim, width) * 0.2, "proj.bias": torch.zeros(4 * dim),
                                "norm.weight": torch.ones(dim), "norm.bias": torch.zeros(dim)},
                 "ip_adapter": {}}
        key = 1  # diffusers numbers the text cross-attentions 1, 3, 5, ... in processor order
        for name in unet.attn_processors:
            if name.endswith("attn2.processor"):
                hidden = unet.get_submodule(name.removesuffix(".processor")).to_k.out_features
                state["ip_adapter"][f"{key}.to_k_ip.weight"] = torch.randn(hidden, dim) * 0.2
                state["ip_adapter"][f"{key}.to_v_ip.weight"] = torch.randn(hidden, dim) * 0.2
                key += 2
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return IPAdapter(state, encoder.eval().requires_grad_(False), processor, TINY)


def _missing(source: str, why: str) -> MissingWeightsError:
    return MissingWeightsError(
        f"IP-Adapter '{source}' is not available: {why}. Download h94/IP-Adapter's models/{WEIGHT_NAME} and "
        f"models/{ENCODER_FOLDER}/ on a machine with internet and give that folder as the style's IP-Adapter "
        "(--ip-adapter, or the Style tab's advanced panel).")


def _files(source: str) -> tuple[Path, Path]:
    """(weights file, image-encoder folder) from a local folder or the hub."""
    local = Path(source).expanduser()
    if local.exists():
        for root in (local, local / HUB_SUBFOLDER):
            if (root / WEIGHT_NAME).is_file() and (root / ENCODER_FOLDER / "config.json").is_file():
                return root / WEIGHT_NAME, root / ENCODER_FOLDER
        raise _missing(source, f"the folder has no {WEIGHT_NAME} beside an {ENCODER_FOLDER}/ folder")
    if not settings.is_hub_id(source):
        raise _missing(source, "it is neither a local folder nor a hub id like 'owner/name'")
    from huggingface_hub import snapshot_download

    try:
        root = Path(snapshot_download(source, allow_patterns=[f"{HUB_SUBFOLDER}/{WEIGHT_NAME}",
                                                              f"{HUB_SUBFOLDER}/{ENCODER_FOLDER}/*"],
                                      local_files_only=settings.hub_offline())) / HUB_SUBFOLDER
    except Exception as exc:  # hub/network errors come in many types; all mean "not here"
        raise _missing(source, settings.load_failure(exc, from_hub=True)) from exc
    if not (root / WEIGHT_NAME).is_file():
        raise _missing(source, f"the repository has no {HUB_SUBFOLDER}/{WEIGHT_NAME}")
    return root / WEIGHT_NAME, root / ENCODER_FOLDER


def load_ip_adapter(source: str, backbone: Backbone, scale: float = 1.0) -> IPAdapter:
    if source == TINY:
        if not backbone.is_demo:
            raise _missing(source, "the random test IP-Adapter only goes with a random (demo) backbone")
        return replace(tiny_ip_adapter(backbone.unet), scale=scale)
    from safetensors.torch import load_file
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    weights, encoder_dir = _files(source)
    try:
        flat = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types for a damaged file
        raise BadInputError(f"IP-Adapter {source}: not a readable safetensors file ({type(exc).__name__}).") from None
    state: dict[str, dict[str, torch.Tensor]] = {"image_proj": {}, "ip_adapter": {}}
    for key, value in flat.items():
        group, _, rest = key.partition(".")
        if group in state:
            state[group][rest] = value
    if "proj.weight" not in state["image_proj"] or not state["ip_adapter"]:
        raise BadInputError(f"IP-Adapter {source}: not a plain IP-Adapter ({WEIGHT_NAME}: image_proj.proj.* and "
                            "ip_adapter.*); the Plus and Face variants are not supported.")
    try:
        encoder = CLIPVisionModelWithProjection.from_pretrained(str(encoder_dir), torch_dtype=backbone.dtype)
        processor = CLIPImageProcessor()  # IP-Adapter's encoders use CLIP's standard 224 px preprocessing
    except Exception as exc:  # filesystem/config errors come in many types; all mean "not usable here"
        raise _missing(source, settings.load_failure(exc, from_hub=False)) from exc
    return IPAdapter(state, encoder.to(backbone.device).eval().requires_grad_(False), processor, source, scale)
