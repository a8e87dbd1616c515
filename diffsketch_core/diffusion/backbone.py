"""Load the Stable Diffusion 1.x parts everything else stands on.

`load_backbone(source)` takes
- a hub id (default `CompVis/stable-diffusion-v1-4`, the model of the DiffSketch paper, or $DIFFSKETCH_SD_MODEL),
- a local diffusers directory (model_index.json with unet/, vae/, text_encoder/, tokenizer/),
- "tiny": an SD-1.x-shaped model with small widths and seeded random weights, for tests and the app's demo mode,
- "sd15-shaped": the real SD-1.5 configs with random weights, for measuring cost (compute does not depend on values).

Random-weight backbones say so (`is_demo`); nothing ever swaps one in for real weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from .. import settings
from ..errors import MissingWeightsError

TINY = "tiny"
SD15_SHAPED = "sd15-shaped"
RANDOM_SOURCES = (TINY, SD15_SHAPED)

# DDIM as DiffSketch samples it (ldm "uniform" = diffusers "leading" with offset 1): 50 steps give t = 1, 21, ..., 981.
_DDIM_SETTINGS = dict(clip_sample=False, set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading")
_SD_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


@dataclass
class Backbone:
    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler: DDIMScheduler
    source: str
    is_demo: bool  # random weights: pictures and features mean nothing, only shapes and costs do
    device: torch.device
    dtype: torch.dtype

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def resolution(self) -> int:
        """Native image side: 512 for SD-1.x, 128 for the tiny backbone."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    @property
    def fingerprint(self) -> dict:
        """What a trained style must match to be used with this backbone (widths, not weights)."""
        cfg = self.unet.config
        return {"source": self.source, "block_out_channels": list(cfg.block_out_channels),
                "layers_per_block": cfg.layers_per_block, "cross_attention_dim": cfg.cross_attention_dim,
                "vae_block_out_channels": list(self.vae.config.block_out_channels)}

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str] | str) -> torch.Tensor:
        """Text-encoder hidden states (B, 77, D) for the UNet's cross-attention."""
        if isinstance(prompts, str):
            prompts = [prompts]
        ids = self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(self.device)
        return self.text_encoder(ids)[0].to(self.dtype)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    # fp16 is the norm on GPUs; on CPU fp16/bf16 convolutions are slow or unsupported.
    return torch.float16 if device.type == "cuda" else torch.float32


def load_backbone(source: str | None = None, device: str | torch.device | None = None,
                  dtype: torch.dtype | None = None) -> Backbone:
    source = source or settings.sd_model()
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or default_dtype(device)
    if source in RANDOM_SOURCES:
        parts = _random_parts(source)
    else:
        parts = _pretrained_parts(source, dtype)
    unet, vae, text_encoder, tokenizer, scheduler = parts
    for m in (unet, vae, text_encoder):
        m.requires_grad_(False).eval().to(device)
        if m.dtype != dtype:  # pretrained parts already come in `dtype`; random ones are built in fp32
            m.to(dtype)
    return Backbone(unet, vae, text_encoder, tokenizer, scheduler, source, source in RANDOM_SOURCES, device, dtype)


def sd_scheduler(config: dict | None = None) -> DDIMScheduler:
    base = dict(_SD_SCHEDULE)
    if config:
        base.update({k: v for k, v in config.items() if k in _SD_SCHEDULE or k == "prediction_type"})
    return DDIMScheduler(**base, **_DDIM_SETTINGS)


# ---------------------------------------------------------------- random-weight backbones

def _unet_config(kind: str) -> dict:
    if kind == TINY:
        return dict(block_out_channels=(8, 16, 32, 32), layers_per_block=2, norm_num_groups=4,
                    attention_head_dim=2, cross_attention_dim=16, sample_size=16)
    return dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, attention_head_dim=8,
                cross_attention_dim=768, sample_size=64)


def _vae_config(kind: str) -> dict:
    widths, groups, size = ((8, 16, 32, 32), 4, 128) if kind == TINY else ((128, 256, 512, 512), 32, 512)
    return dict(block_out_channels=widths, norm_num_groups=groups, sample_size=size, layers_per_block=2,
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                latent_channels=4, scaling_factor=0.18215)


def _text_config(kind: str) -> CLIPTextConfig:
    if kind == TINY:
        return CLIPTextConfig(vocab_size=1000, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                              num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                              pad_token_id=1)
    return CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                          num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu")


def _random_parts(kind: str):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the tiny backbone is the same model on every run and machine
        unet = UNet2DConditionModel(**_unet_config(kind))
        vae = AutoencoderKL(**_vae_config(kind))
        text_encoder = CLIPTextModel(_text_config(kind))
    return unet, vae, text_encoder, char_tokenizer(), sd_scheduler()


def char_tokenizer() -> CLIPTokenizer:
    """A real CLIPTokenizer over single byte-level characters (no merges), built without downloads.
    Ids stay below 520, so it fits both random text encoders."""
    from tokenizers.pre_tokenizers import ByteLevel

    chars = sorted(ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": i + len(chars) for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


# ---------------------------------------------------------------- pretrained backbones

def _missing(source: str, why: str) -> MissingWeightsError:
    return MissingWeightsError(
        f"Stable Diffusion weights '{source}' are not available: {why}. Download a diffusers copy of "
        f"{settings.DEFAULT_SD_MODEL} (or another SD 1.x) on a machine with internet and point "
        f"{settings.SD_MODEL_ENV} (or --backbone) at its local directory, or set it to 'tiny' for the demo backbone.")


def _pretrained_parts(source: str, dtype: torch.dtype):
    local = Path(source).expanduser()
    if local.exists():
        if not (local / "unet").is_dir() or not (local / "vae").is_dir():
            raise _missing(source, "the directory has no unet/ and vae/ subfolders (is it a diffusers SD 1.x copy?)")
        where, kw = str(local), {}
    elif settings.is_hub_id(source):
        where, kw = source, {"local_files_only": settings.hub_offline()}
    else:
        raise _missing(source, "it is neither a local directory nor a hub id like 'owner/name'")
    try:
        unet = UNet2DConditionModel.from_pretrained(where, subfolder="unet", torch_dtype=dtype, **kw)
        vae = AutoencoderKL.from_pretrained(where, subfolder="vae", torch_dtype=dtype, **kw)
        text_encoder = CLIPTextModel.from_pretrained(where, subfolder="text_encoder", torch_dtype=dtype, **kw)
        tokenizer = CLIPTokenizer.from_pretrained(where, subfolder="tokenizer", **kw)
        sched_cfg = DDIMScheduler.load_config(where, subfolder="scheduler", **kw)
    except Exception as exc:  # hub/network/filesystem errors come in many types; all mean "not here"
        raise _missing(source, settings.load_failure(exc, from_hub=bool(kw))) from exc
    return unet, vae, text_encoder, tokenizer, sd_scheduler(sched_cfg)
