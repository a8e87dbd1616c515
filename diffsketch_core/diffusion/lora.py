"""LoRA on the UNet for feature extraction (GATE: a LoRA tuned on images like the user's steers the reconstruction
toward them), merged for the length of a `with` block and removed exactly afterwards.

Diffusers' own adapter loading (`load_lora_weights`) needs the peft package, which this project does not ship; the
low-rank update is simple enough to merge directly: W <- W + scale * (alpha / r) * B @ A for every LoRA pair. The
original weights of the touched layers are kept and written back on exit, so unloading restores the UNet bit for
bit (the backbone is shared by every tab of the app).

Files: a `.safetensors` file, or a folder / hub id holding `pytorch_lora_weights.safetensors`, in the diffusers/peft
layout (`unet.<module>.lora_A.weight` / `lora_B.weight`, optional `<module>.alpha`) or the older diffusers layout
(`<module>.lora.down.weight` / `lora.up.weight`), or kohya's (sd-scripts, what most shared SD 1.x LoRAs use:
`lora_unet_<module with _ for .>.lora_down.weight` / `lora_up.weight` / `.alpha`; its flat names are matched to the
UNet's layers when the LoRA is applied). Kohya's SDXL files name the original (LDM) UNet's blocks
(`input_blocks_4_1_...`), not diffusers': they are refused with a sentence, as are LyCORIS kinds (LoHa, LoKr).
Text-encoder entries are ignored (our captions are encoded without the LoRA, the same at training and inference).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from .. import settings
from ..errors import BadInputError, MissingWeightsError

WEIGHT_NAME = "pytorch_lora_weights.safetensors"
_PAIRS = ((".lora_A.weight", ".lora_B.weight"), (".lora.down.weight", ".lora.up.weight"),
          (".lora_down.weight", ".lora_up.weight"))
KOHYA_UNET = "lora_unet_"
_TEXT_ENCODER = ("text_encoder", "lora_te")  # diffusers' and kohya's (lora_te_, lora_te1_, lora_te2_) prefixes
_LDM_BLOCKS = ("input_blocks_", "middle_block_", "output_blocks_")
_LYCORIS = (".hada_w1_a", ".lokr_w1", ".lokr_w1_a")


@dataclass
class LoRA:
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor, float]]  # module path -> (down A (r, in), up B (out, r), alpha)
    source: str

    @classmethod
    def from_state_dict(cls, tensors: dict[str, torch.Tensor], source: str = "") -> "LoRA":
        pairs = {}
        for key, down in tensors.items():
            for a_suffix, b_suffix in _PAIRS:
                if not key.endswith(a_suffix):
                    continue
                path = key[: -len(a_suffix)]
                if path.startswith(_TEXT_ENCODER):
                    continue
                up = tensors.get(path + b_suffix)
                if up is None:
                    raise BadInputError(f"LoRA {source or ''}: {key} has no matching {b_suffix}")
                alpha = tensors.get(path + ".alpha")
                module = path.removeprefix("unet.")
                pairs[module] = (down.float(), up.float(), float(alpha) if alpha is not None else float(down.shape[0]))
        if not pairs:
            kind = " (LyCORIS LoHa/LoKr weights: only plain low-rank LoRAs are supported)" if any(
                k.endswith(_LYCORIS) for k in tensors) else ""
            raise BadInputError(f"No UNet LoRA weights found in {source or 'the file'}{kind}.")
        return cls(pairs, source)

    @contextmanager
    def applied(self, unet: torch.nn.Module, scale: float = 1.0):
        """Merge into `unet` inside the block; the touched weights are restored exactly on exit."""
        saved = {}
        flat = _flat_names(unet) if any(p.startswith(KOHYA_UNET) for p in self.pairs) else {}
        try:
            for key, (down, up, alpha) in self.pairs.items():
                path = self._layer_path(key, flat)
                try:
                    w = unet.get_submodule(path).weight
                except AttributeError:
                    raise BadInputError(f"LoRA {self.source}: the UNet has no layer {path!r} (a LoRA for another "
                                        "backbone?)") from None
                delta = (up.flatten(1) @ down.flatten(1)) * (alpha / down.shape[0]) * scale  # conv LoRAs too
                if delta.numel() != w.numel():
                    raise BadInputError(f"LoRA {self.source}: {path} has shape {tuple(delta.shape)}, the UNet's "
                                        f"{tuple(w.shape)} (a LoRA for another backbone?)")
                saved[path] = w.detach().clone()
                with torch.no_grad():
                    w.add_(delta.view_as(w).to(w.device, w.dtype))
            yield self
        finally:
            with torch.no_grad():
                for path, w in saved.items():
                    unet.get_submodule(path).weight.copy_(w)

    def _layer_path(self, key: str, flat: dict[str, str]) -> str:
        """The module path a LoRA entry names: kohya's flat names are looked up in `flat` (kohya SDXL's LDM block
        names get a sentence); other names are paths already."""
        if not key.startswith(KOHYA_UNET):
            return key
        name = key.removeprefix(KOHYA_UNET)
        if name not in flat and name.startswith(_LDM_BLOCKS):
            raise BadInputError(f"LoRA {self.source}: kohya's SDXL layout names the original UNet's blocks "
                                f"({name!r}); convert it to the diffusers layout first (diffusers' "
                                "load_lora_weights + save_lora_weights).")
        return flat.get(name, key)  # an unknown name is looked up as it is, and refused as "no layer"


def _flat_names(unet: torch.nn.Module) -> dict[str, str]:
    """kohya's name of each UNet layer with weights ('down_blocks_0_attentions_0_proj_in') -> its module path."""
    return {name.replace(".", "_"): name for name, m in unet.named_modules() if hasattr(m, "weight")}


def _missing(source: str, why: str) -> MissingWeightsError:
    return MissingWeightsError(f"LoRA '{source}' is not available: {why}. Give a local .safetensors file or a folder "
                               f"with {WEIGHT_NAME} as the style's LoRA (--lora, or the Style tab's advanced panel).")


def load_lora(source: str) -> LoRA:
    local = Path(source).expanduser()
    if local.is_file():
        path = local
    elif local.is_dir():
        path = local / WEIGHT_NAME
        if not path.is_file():
            raise _missing(source, f"the folder has no {WEIGHT_NAME}")
    elif settings.is_hub_id(source):
        from huggingface_hub import hf_hub_download

        try:
            path = Path(hf_hub_download(source, WEIGHT_NAME, local_files_only=settings.hub_offline()))
        except Exception as exc:  # hub/network errors come in many types; all mean "not here"
            raise _missing(source, settings.load_failure(exc, from_hub=True)) from exc
    else:
        raise _missing(source, "it is neither a file, a folder nor a hub id like 'owner/name'")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for a damaged file
        raise BadInputError(f"LoRA {source}: not a readable safetensors file ({type(exc).__name__}).") from None
    return LoRA.from_state_dict(tensors, source)
