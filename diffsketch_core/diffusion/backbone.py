"""Load the Stable Diffusion parts everything else stands on: SD 1.x, SD 2.x or SDXL (the backbone's `family`).

`load_backbone(source)` takes
- a hub id (default `CompVis/stable-diffusion-v1-4`, the model of the DiffSketch paper, or $DIFFSKETCH_SD_MODEL;
  KNOWN_MODELS lists the SD 2.x and SDXL ones we target),
- a local diffusers directory (model_index.json with unet/, vae/, text_encoder/, tokenizer/, and for SDXL
  text_encoder_2/ and tokenizer_2/); the family is read from its configs (`family_of`),
- "tiny" / "tiny-sd2" / "tiny-sdxl": models shaped like SD 1.x / SD 2.x (v-prediction, linear projections, heads
  per block) / SDXL (two text encoders, pooled embedding, added time ids), small widths and seeded random weights,
  for tests and the app's demo mode,
- "sd15-shaped" / "sd21-shaped" / "sdxl-shaped": the real configs with random weights, for measuring cost (compute
  does not depend on values; sdxl-shaped needs about 14 GB in fp32).

Random-weight backbones say so (`is_demo`); nothing ever swaps one in for real weights.

SDXL conditions its UNet on more than the text tokens: the pooled embedding of its second text encoder and six
"time ids" (original size, crop corner, target size). `encode_prompt` returns the pooled embedding as one more
token row after the 77 (zero-padded to the token width), so every piece of code that batches, expands or mixes
conditions (CFG batches, the extraction's rows, CDST's prior and schedule) carries it without knowing about it;
`unet_kwargs` unpacks it, and adds the time ids, at each UNet call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from .. import settings
from ..errors import MissingWeightsError

SD1, SD2, SDXL = "sd1", "sd2", "sdxl"
FAMILY_NAMES = {SD1: "Stable Diffusion 1.x", SD2: "Stable Diffusion 2.x", SDXL: "Stable Diffusion XL"}
# The hub ids each family was built and documented for (any diffusers copy of the same family works).
KNOWN_MODELS = {
    "CompVis/stable-diffusion-v1-4": "SD 1.4, 512 px, the DiffSketch paper's model (default)",
    "stabilityai/stable-diffusion-2-1": "SD 2.1, 768 px, v-prediction",
    "stabilityai/stable-diffusion-2-1-base": "SD 2.1 base, 512 px, epsilon-prediction",
    "stabilityai/stable-diffusion-xl-base-1.0": "SDXL base 1.0, 1024 px, two text encoders",
}

TINY, TINY_SD2, TINY_SDXL = "tiny", "tiny-sd2", "tiny-sdxl"
SD15_SHAPED, SD21_SHAPED, SDXL_SHAPED = "sd15-shaped", "sd21-shaped", "sdxl-shaped"
RANDOM_SOURCES = {TINY: SD1, TINY_SD2: SD2, TINY_SDXL: SDXL, SD15_SHAPED: SD1, SD21_SHAPED: SD2, SDXL_SHAPED: SDXL}
TINY_SOURCES = (TINY, TINY_SD2, TINY_SDXL)

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
    dtype: torch.dtype  # of the UNet and text encoders; an SDXL VAE stays in fp32 (`vae.dtype`), it overflows in fp16
    family: str = SD1
    text_encoder_2: CLIPTextModelWithProjection | None = None  # SDXL's second (OpenCLIP bigG) encoder
    tokenizer_2: CLIPTokenizer | None = None
    force_zeros_for_empty_prompt: bool = True  # SDXL: an empty prompt's embedding is zeros (its pipeline's rule)

    @property
    def prediction_type(self) -> str:
        """What the UNet predicts: "epsilon" (SD 1.x, SD 2.x base, SDXL) or "v_prediction" (SD 2.x 768)."""
        return str(self.scheduler.config.prediction_type)

    @property
    def pooled_dim(self) -> int:
        """Width of SDXL's pooled text embedding (the UNet's added-embedding input less the 6 time ids); 0 otherwise."""
        cfg = self.unet.config
        if self.family != SDXL:
            return 0
        return int(cfg.projection_class_embeddings_input_dim) - 6 * int(cfg.addition_time_embed_dim)

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def resolution(self) -> int:
        """Native image side, from the UNet config: 512 for SD-1.x, 768 for SD 2.1, 1024 for SDXL, 128 tiny."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    @property
    def fingerprint(self) -> dict:
        """What a trained style must match to be used with this backbone (widths, not weights)."""
        cfg = self.unet.config
        return {"source": self.source, "family": self.family, "block_out_channels": list(cfg.block_out_channels),
                "layers_per_block": cfg.layers_per_block, "cross_attention_dim": cfg.cross_attention_dim,
                "vae_block_out_channels": list(self.vae.config.block_out_channels)}

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str] | str) -> torch.Tensor:
        """Text conditions for the UNet: (B, 77, D) hidden states for SD 1.x / 2.x; for SDXL (B, 78, 2048): both
        encoders' penultimate hidden states side by side, then the pooled embedding as a zero-padded last row."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if self.family != SDXL:
            return self.text_encoder(_token_ids(self.tokenizer, prompts, self.device))[0].to(self.dtype)
        hidden, pooled = [], None
        for tok, enc in ((self.tokenizer, self.text_encoder), (self.tokenizer_2, self.text_encoder_2)):
            out = enc(_token_ids(tok, prompts, self.device), output_hidden_states=True)
            hidden.append(out.hidden_states[-2])  # SDXL reads the penultimate layer of both encoders
            pooled = out[0]  # the second encoder's projected pooled embedding (text_embeds)
        seq = torch.cat(hidden, -1)
        emb = torch.cat([seq, F.pad(pooled, (0, seq.shape[-1] - pooled.shape[-1]))[:, None]], 1)
        if self.force_zeros_for_empty_prompt:  # SDXL was trained with zeros as the unconditional embedding
            emb[torch.tensor([not p.strip() for p in prompts], device=emb.device)] = 0
        return emb.to(self.dtype)

    def unet_kwargs(self, emb: torch.Tensor, latent_hw: tuple[int, int], original_hw: tuple[int, int] | None = None,
                    crop: tuple[int, int] = (0, 0)) -> dict:
        """The UNet's (and a ControlNet's) condition keywords for condition rows `emb` from encode_prompt. SDXL adds
        `added_cond_kwargs`: the pooled embedding and the time ids (original size, default the image size; crop
        corner; target size = the image size at `latent_hw`)."""
        if self.family != SDXL:
            return {"encoder_hidden_states": emb}
        target = (latent_hw[0] * self.vae_scale_factor, latent_hw[1] * self.vae_scale_factor)
        ids = torch.tensor([*(original_hw or target), *crop, *target], device=emb.device, dtype=emb.dtype)
        return {"encoder_hidden_states": emb[:, :-1],
                "added_cond_kwargs": {"text_embeds": emb[:, -1, :self.pooled_dim],
                                      "time_ids": ids.expand(emb.shape[0], -1)}}


def _token_ids(tokenizer: CLIPTokenizer, prompts: list[str], device: torch.device) -> torch.Tensor:
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids.to(device)


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
    parts = _random_parts(source) if source in RANDOM_SOURCES else _pretrained_parts(source, dtype)
    family = parts.pop("family")
    for m in (parts["unet"], parts["vae"], parts["text_encoder"], parts.get("text_encoder_2")):
        if m is None:
            continue
        m.requires_grad_(False).eval().to(device)
        if m.dtype != dtype:  # pretrained parts already come in `dtype`; random ones are built in fp32
            m.to(dtype)
    vae = parts["vae"]
    if family == SDXL and vae.config.force_upcast and vae.dtype != torch.float32:
        vae.to(torch.float32)  # SDXL's VAE overflows in fp16 (an fp16-fix VAE, force_upcast false, does not)
    return Backbone(source=source, is_demo=source in RANDOM_SOURCES, device=device, dtype=dtype, family=family,
                    **parts)


def sd_scheduler(config: dict | None = None) -> DDIMScheduler:
    base = dict(_SD_SCHEDULE)
    if config:
        base.update({k: v for k, v in config.items() if k in _SD_SCHEDULE or k == "prediction_type"})
    return DDIMScheduler(**base, **_DDIM_SETTINGS)


# ---------------------------------------------------------------- random-weight backbones

def _unet_config(kind: str) -> dict:
    family = RANDOM_SOURCES[kind]
    if kind in TINY_SOURCES:
        if family == SDXL:  # SDXL's block types and added conditions; heads per block, 1-3 transformer layers
            return dict(block_out_channels=(8, 16, 32), layers_per_block=2, norm_num_groups=4,
                        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                        attention_head_dim=(2, 2, 4), transformer_layers_per_block=(1, 2, 3), cross_attention_dim=32,
                        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
                        projection_class_embeddings_input_dim=6 * 8 + 16, sample_size=16)
        tiny = dict(block_out_channels=(8, 16, 32, 32), layers_per_block=2, norm_num_groups=4,
                    attention_head_dim=2, cross_attention_dim=16, sample_size=16)
        if family == SD2:  # SD 2.x: heads per block, linear projections, upcast attention, 1.5x SD 1.x's size
            tiny |= dict(attention_head_dim=(1, 2, 4, 4), use_linear_projection=True, upcast_attention=True,
                         cross_attention_dim=24, sample_size=24)
        return tiny
    if family == SDXL:
        return dict(block_out_channels=(320, 640, 1280), layers_per_block=2,
                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                    attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048,
                    use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
                    projection_class_embeddings_input_dim=2816, sample_size=128)
    if family == SD2:
        return dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, attention_head_dim=(5, 10, 20, 20),
                    cross_attention_dim=1024, use_linear_projection=True, upcast_attention=True, sample_size=96)
    return dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, attention_head_dim=8,
                cross_attention_dim=768, sample_size=64)


def _vae_config(kind: str) -> dict:
    tiny = kind in TINY_SOURCES
    widths, groups = ((8, 16, 32, 32), 4) if tiny else ((128, 256, 512, 512), 32)
    size = _unet_config(kind)["sample_size"] * 8
    xl = RANDOM_SOURCES[kind] == SDXL
    return dict(block_out_channels=widths, norm_num_groups=groups, sample_size=size, layers_per_block=2,
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                latent_channels=4, scaling_factor=0.13025 if xl else 0.18215, force_upcast=xl)


def _text_configs(kind: str) -> list[CLIPTextConfig]:
    """One text-encoder config, or SDXL's two (CLIP ViT-L, then OpenCLIP bigG with a projection)."""
    family = RANDOM_SOURCES[kind]
    if kind in TINY_SOURCES:
        tiny = dict(vocab_size=1000, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                    max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1)
        if family == SDXL:
            return [CLIPTextConfig(hidden_size=16, **tiny),
                    CLIPTextConfig(hidden_size=16, projection_dim=16, hidden_act="gelu", **tiny)]
        return [CLIPTextConfig(hidden_size=_unet_config(kind)["cross_attention_dim"],
                               hidden_act="gelu" if family == SD2 else "quick_gelu", **tiny)]
    common = dict(vocab_size=49408, max_position_embeddings=77)
    clip_l = CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                            hidden_act="quick_gelu", **common)
    if family == SD2:  # OpenCLIP ViT-H less its last layer, as diffusers ships it
        return [CLIPTextConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
                               hidden_act="gelu", projection_dim=512, **common)]
    if family == SDXL:
        return [clip_l, CLIPTextConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                                       num_attention_heads=20, hidden_act="gelu", projection_dim=1280, **common)]
    return [clip_l]


def _random_parts(kind: str) -> dict:
    family = RANDOM_SOURCES[kind]
    texts = _text_configs(kind)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the tiny backbone is the same model on every run and machine
        parts = dict(unet=UNet2DConditionModel(**_unet_config(kind)), vae=AutoencoderKL(**_vae_config(kind)),
                     text_encoder=CLIPTextModel(texts[0]))
        if family == SDXL:
            parts |= dict(text_encoder_2=CLIPTextModelWithProjection(texts[1]), tokenizer_2=char_tokenizer())
    prediction = {"prediction_type": "v_prediction"} if family == SD2 else None  # as SD 2.1 (768)
    return parts | dict(tokenizer=char_tokenizer(), scheduler=sd_scheduler(prediction), family=family)


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

def family_of(model_index: dict, unet_config: dict) -> str:
    """sd1 / sd2 / sdxl from a diffusers folder's configs: SDXL's pipeline class, second text encoder or the UNet's
    added "text_time" embedding; SD 2.x's linear attention projections and 1024-wide (OpenCLIP-H) text condition."""
    if "XL" in str(model_index.get("_class_name", "")) or "text_encoder_2" in model_index \
            or unet_config.get("addition_embed_type") == "text_time":
        return SDXL
    if unet_config.get("use_linear_projection") or unet_config.get("cross_attention_dim") == 1024:
        return SD2
    return SD1


def _missing(source: str, why: str) -> MissingWeightsError:
    return MissingWeightsError(
        f"Stable Diffusion weights '{source}' are not available: {why}. Download a diffusers copy of "
        f"{settings.DEFAULT_SD_MODEL} (or another SD 1.x, SD 2.x such as stabilityai/stable-diffusion-2-1, or SDXL "
        f"such as stabilityai/stable-diffusion-xl-base-1.0) on a machine with internet and point "
        f"{settings.SD_MODEL_ENV} (or --backbone) at its local directory, or set it to 'tiny' for the demo backbone.")


def _where(source: str) -> tuple[str, dict]:
    local = Path(source).expanduser()
    if local.exists():
        if not (local / "unet").is_dir() or not (local / "vae").is_dir():
            raise _missing(source, "the directory has no unet/ and vae/ subfolders (is it a diffusers Stable "
                                   "Diffusion copy?)")
        return str(local), {}
    if settings.is_hub_id(source):
        return source, {"local_files_only": settings.hub_offline()}
    raise _missing(source, "it is neither a local directory nor a hub id like 'owner/name'")


def _model_index(where: str, kw: dict) -> dict:
    """model_index.json (the pipeline class and its parts); a local folder may lack it."""
    from diffusers import DiffusionPipeline

    if not kw and not (Path(where) / "model_index.json").is_file():
        return {}
    return dict(DiffusionPipeline.load_config(where, **kw))


def _pretrained_parts(source: str, dtype: torch.dtype) -> dict:
    where, kw = _where(source)
    try:
        index = _model_index(where, kw)
        family = family_of(index, dict(UNet2DConditionModel.load_config(where, subfolder="unet", **kw)))
        if family == SDXL and index.get("requires_aesthetics_score"):
            raise _missing(source, "it is an SDXL refiner (one text encoder, aesthetic-score conditioning); "
                                   "load an SDXL base model")
        parts = dict(unet=UNet2DConditionModel.from_pretrained(where, subfolder="unet", torch_dtype=dtype, **kw),
                     vae=AutoencoderKL.from_pretrained(where, subfolder="vae", torch_dtype=dtype, **kw),
                     text_encoder=CLIPTextModel.from_pretrained(where, subfolder="text_encoder", torch_dtype=dtype, **kw),
                     tokenizer=CLIPTokenizer.from_pretrained(where, subfolder="tokenizer", **kw),
                     family=family)
        if family == SDXL:
            parts |= dict(text_encoder_2=CLIPTextModelWithProjection.from_pretrained(
                              where, subfolder="text_encoder_2", torch_dtype=dtype, **kw),
                          tokenizer_2=CLIPTokenizer.from_pretrained(where, subfolder="tokenizer_2", **kw),
                          force_zeros_for_empty_prompt=bool(index.get("force_zeros_for_empty_prompt", True)))
        sched_cfg = DDIMScheduler.load_config(where, subfolder="scheduler", **kw)
    except MissingWeightsError:
        raise
    except Exception as exc:  # hub/network/filesystem errors come in many types; all mean "not here"
        raise _missing(source, settings.load_failure(exc, from_hub=bool(kw))) from exc
    return parts | {"scheduler": sd_scheduler(sched_cfg)}
