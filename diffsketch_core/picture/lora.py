"""Low-rank adapters (LoRA) on the UNet's attention projections: the "LoRA-sized updates" DiffSketching's
fine-tuning makes instead of changing the whole UNet.

Each adapted `nn.Linear` W gets W x + (alpha / rank) B A x with A (rank x in) seeded like PEFT's (Kaiming-uniform) and
B (out x rank) zero, so a fresh LoRA changes nothing. The files are safetensors with keys named as diffusers
names a UNet's PEFT LoRA (`unet.<module>.lora_A.weight`, `.lora_B.weight`) and rank/alpha in the metadata.
`applied(unet, lora)` installs the adapters for a block of code and always takes them out again, so a backbone
shared by the app's users is never left changed.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..errors import BadInputError

TARGETS = ("to_q", "to_k", "to_v", "to_out.0")  # attention projections, the usual SD LoRA targets
PREFIX = "unet."


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, a: nn.Parameter, b: nn.Parameter, scale: float):
        super().__init__()
        self.base, self.lora_A, self.lora_B, self.scale = base, a, b, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = (x.to(self.lora_A.dtype) @ self.lora_A.t()) @ self.lora_B.t()
        return self.base(x) + (self.scale * low).to(x.dtype)


def target_names(unet: nn.Module) -> list[str]:
    return [name for name, m in unet.named_modules()
            if isinstance(m, nn.Linear) and ".attn" in name and name.endswith(TARGETS)]


class LoRA:
    """The adapter weights (fp32 parameters, trainable), by module name."""

    def __init__(self, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], rank: int, alpha: float):
        self.a = {k: nn.Parameter(v.float()) for k, v in a.items()}
        self.b = {k: nn.Parameter(v.float()) for k, v in b.items()}
        self.rank, self.alpha = int(rank), float(alpha)

    @classmethod
    def fresh(cls, unet: nn.Module, rank: int = 4, alpha: float | None = None, seed: int = 0) -> "LoRA":
        gen = torch.Generator().manual_seed(seed)
        a, b = {}, {}
        for name in target_names(unet):
            lin = unet.get_submodule(name)
            bound = 1.0 / math.sqrt(lin.in_features)  # Kaiming-uniform with a = sqrt(5), as nn.Linear and PEFT
            a[name] = (torch.rand(rank, lin.in_features, generator=gen) * 2 - 1) * bound
            b[name] = torch.zeros(lin.out_features, rank)
        return cls(a, b, rank, alpha if alpha is not None else rank)

    def parameters(self) -> list[nn.Parameter]:
        return [p for k in self.a for p in (self.a[k], self.b[k])]

    def to(self, device: torch.device | str) -> "LoRA":
        for d in (self.a, self.b):
            for k in d:
                d[k] = nn.Parameter(d[k].detach().to(device), requires_grad=d[k].requires_grad)
        return self

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for k in self.a:
            tensors[f"{PREFIX}{k}.lora_A.weight"] = self.a[k].detach().cpu().contiguous()
            tensors[f"{PREFIX}{k}.lora_B.weight"] = self.b[k].detach().cpu().contiguous()
        save_file(tensors, str(path), metadata={"rank": str(self.rank), "alpha": str(self.alpha), "format": "diffsketch-lora"})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "LoRA":
        path = Path(path)
        if not path.is_file():
            raise BadInputError(f"No LoRA file at {path}.")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # a file that is not safetensors: the user's input, not a bug
            raise BadInputError(f"{path.name} is not a safetensors LoRA ({type(exc).__name__}).") from None
        a = {k[len(PREFIX):-len(".lora_A.weight")]: v for k, v in tensors.items() if k.endswith(".lora_A.weight")}
        b = {k[len(PREFIX):-len(".lora_B.weight")]: v for k, v in tensors.items() if k.endswith(".lora_B.weight")}
        if not a or a.keys() != b.keys():
            raise BadInputError(f"{path.name} holds no UNet LoRA (lora_A/lora_B pairs).")
        rank = int(meta.get("rank", next(iter(a.values())).shape[0]))
        return cls(a, b, rank, float(meta.get("alpha", rank)))

    def check(self, unet: nn.Module) -> None:
        for k, a in self.a.items():
            try:
                lin = unet.get_submodule(k)
            except AttributeError:
                lin = None
            if not isinstance(lin, nn.Linear) or a.shape[1] != lin.in_features or self.b[k].shape[0] != lin.out_features:
                raise BadInputError(f"This LoRA was trained for another backbone: the UNet has no layer {k} of its shape.")


@contextmanager
def applied(unet: nn.Module, lora: LoRA | None) -> Iterator[None]:
    """Within the block, `unet` computes with the adapters (and their gradients reach `lora`'s parameters)."""
    if lora is None:
        yield
        return
    lora.check(unet)
    swapped = []
    try:
        for name in lora.a:
            parent_name, _, child = name.rpartition(".")
            parent = unet.get_submodule(parent_name)
            base = getattr(parent, child)
            setattr(parent, child, LoRALinear(base, lora.a[name], lora.b[name], lora.alpha / lora.rank))
            swapped.append((parent, child, base))
        yield
    finally:
        for parent, child, base in reversed(swapped):
            setattr(parent, child, base)
