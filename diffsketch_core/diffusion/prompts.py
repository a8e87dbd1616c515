"""Fine-grained prompts for feature extraction (GATE, "Suppress Content Shift", section 4.2; issue 16 part 2).

GATE's fine-grained prompt is the content words plus quality tags, e.g. "a horse, high quality, best quality,
highly realistic, masterpiece": the more the text says about the photo, and the more it asks for a faithful
realistic picture, the less the UNet imagines content that is not there (content shift).

"Used for both guidance branches", decided for DiffSketch's two-branch generator. GATE's own code runs no
classifier-free guidance: every feature it takes is conditioned on the prompt. DiffSketch's generator takes two
halves, [uncond, cond], both aggregated and concatenated, so each half must stay a distinct, repeatable view of the
image. `uncond` picks what the unconditional half is extracted with (for the example, every CDST sample and every
photo at inference alike; the CDST images themselves are still drawn with CFG's empty prompt):

- "empty" (default, DiffSketch): the empty prompt. The fine-grained prompt steers the cond half only.
- "tags": the quality tags alone. Both halves are steered toward a faithful, realistic reconstruction; the halves
  differ by the content words only, so the generator still sees "with" and "without" the description.
- "prompt": GATE literally: the unconditional half is extracted with the very prompt of the cond half (for a CDST
  sample, its own condition). The two halves are then equal, so the generator sees one view twice, at the cost of
  two; kept for comparison with the paper, not recommended.

A negative prompt ("low quality, blurry") in the unconditional slot was not offered: without CFG there is nothing
to push away from, and it would steer that half toward a worse reconstruction, the opposite of GATE's aim.

The options are recorded in style.json ("prompts"), so Photo -> Sketch builds the same texts at inference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

QUALITY_TAGS = "high quality, best quality, highly realistic, masterpiece"  # GATE's released prompts
UNCOND_CHOICES = ("empty", "tags", "prompt")


@dataclass(frozen=True)
class PromptOptions:
    fine_grained: bool = False  # append the quality tags to the caption of the cond half
    uncond: str = "empty"  # what the unconditional half is extracted with (module docstring)

    def __post_init__(self) -> None:
        if self.uncond not in UNCOND_CHOICES:
            raise ValueError(f"Unknown unconditional prompt {self.uncond!r}; choose one of "
                             f"{', '.join(UNCOND_CHOICES)}.")

    @property
    def is_default(self) -> bool:
        return self == PromptOptions()

    def text(self, caption: str) -> str:
        """The cond half's prompt for a caption (the caption itself, unchanged, unless fine-grained)."""
        if not self.fine_grained:
            return caption
        caption = " ".join(caption.split()).rstrip(" ,.")
        return f"{caption}, {QUALITY_TAGS}" if caption else QUALITY_TAGS

    def to_meta(self) -> dict:
        return asdict(self)

    @classmethod
    def from_meta(cls, meta: dict | None) -> "PromptOptions":
        """style.json's "prompts" (absent in styles made before it existed: the defaults they were made with)."""
        if not isinstance(meta, dict):
            return cls()
        return cls(bool(meta.get("fine_grained", False)), str(meta.get("uncond", "empty")))


class Prompts:
    """The two halves' text embeddings for a backbone under some options. The fixed unconditional embedding is
    encoded once."""

    def __init__(self, backbone, options: PromptOptions | None = None):
        self.bb, self.options = backbone, options or PromptOptions()
        fixed = {"empty": "", "tags": QUALITY_TAGS}.get(self.options.uncond)
        self._fixed_uncond = backbone.encode_prompt(fixed) if fixed is not None else None

    def cond(self, caption: str) -> torch.Tensor:
        return self.bb.encode_prompt(self.options.text(caption))

    def uncond(self, cond: torch.Tensor) -> torch.Tensor:
        """The unconditional half's embedding for rows whose cond half is `cond` ((B or 1, 77, D))."""
        return cond if self._fixed_uncond is None else self._fixed_uncond
