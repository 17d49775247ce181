"""Dropout whose mask costs ~3× less to draw on the CPU than ``nn.Dropout``'s.

``nn.Dropout`` draws one Bernoulli sample per element through the Mersenne Twister: on SmolLM2's
LoRA inputs ([8, 70, 576] bf16, 120 adapter inputs per step) that was 12 % of a training step's CPU
time (profiled). Here the generator fills int64 words over their full range instead (one draw per
4 elements), each read as four uniform 16-bit lanes; an element is kept when its lane, a signed
value in [-32768, 32768), is >= p·65536 - 32768. Same distribution as ``nn.Dropout`` up to p rounded
to 1/65536 (0.05 → 0.0500030...), same torch generator (so ``torch.manual_seed`` makes it
reproducible), same inverted scaling by 1/(1-p). Computed in the input's dtype, like ``nn.Dropout``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

LANES = 65536  # values of a 16-bit lane


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: Any = None) -> torch.Tensor:
    """Bool tensor of ``shape``, each element True with probability 1 - p (p rounded to 1/65536)."""
    n = 1
    for s in shape:
        n *= s
    threshold = round(p * LANES) - LANES // 2
    if threshold >= LANES // 2:  # p within 1/131072 of 1: no int16 lane reaches it, drop everything
        return torch.zeros(shape, dtype=torch.bool, device=device)
    # random_(int64 min, None) draws the full 64-bit range; plain random_() leaves the top bit 0.
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), None)
    lanes = words.view(torch.int16)[:n].view(shape)
    return lanes >= threshold


class FastDropout(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.scale = 1.0 / (1.0 - p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or round(self.p * LANES) == 0:
            return x
        # where() instead of x * keep: a bf16 × bool product takes a slow type-promotion path.
        return torch.where(keep_mask(x.shape, self.p, x.device), x * self.scale, 0.0)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_fast_dropout(peft_model: Any) -> int:
    """Swap every adapter's ``nn.Dropout`` (PEFT's ``lora_dropout``) for :class:`FastDropout`."""
    swapped = 0
    for module in peft_model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, nn.ModuleDict):
            continue
        for name, d in list(dropouts.items()):
            if type(d) is nn.Dropout and 0 < d.p < 1:  # p = 1 stays nn.Dropout (all zeros)
                dropouts[name] = FastDropout(d.p)
                swapped += 1
    return swapped
