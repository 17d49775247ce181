"""Dropout whose mask costs ~5× less to draw on the CPU than ``nn.Dropout``'s.

``nn.Dropout`` draws one Bernoulli sample per element through the Mersenne Twister: on SmolLM2's
LoRA inputs ([8, 70, 576] bf16, 120 adapter inputs per step) that was 12 % of a training step's CPU
time (profiled). Here the generator fills int64 words instead (one draw per 4 elements), each
sliced into four 16-bit lanes; the low 15 bits of a lane are uniform on [0, 32768), and an element
is kept when its lane is >= p·32768. Same distribution as ``nn.Dropout`` up to p rounded to 1/32768
(0.05 → 0.04999), same torch generator (so ``torch.manual_seed`` makes it reproducible), same
inverted scaling by 1/(1-p). Computed in the input's dtype, like ``nn.Dropout``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

LANES = 32768  # 15 uniform bits per 16-bit lane


class FastDropout(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.threshold = round(p * LANES)
        self.scale = 1.0 / (1.0 - p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.threshold == 0:
            return x
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_()
        lanes = words.view(torch.int16)[:n].view(x.shape)
        keep = torch.bitwise_and(lanes, LANES - 1) >= self.threshold
        # where() instead of x * keep: a bf16 × bool product takes a slow type-promotion path.
        return torch.where(keep, x * self.scale, 0.0)

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
            if type(d) is nn.Dropout and d.p > 0:
                dropouts[name] = FastDropout(d.p)
                swapped += 1
    return swapped
