"""Tune the learning rate per variant, briefly.

Comparing variants at one LR misleads: once LR is tuned per method, DoRA/PiSSA land within 1-2 % of
plain LoRA [Learning Rate Matters 2602.04998]. alpha/r acts like an LR multiplier [LoRA 2106.09685;
QLoRA 2305.14314], so each variant's sweep starts at the LR that keeps ``lr * scaling`` equal to the
baseline's, then walks a factor-``f`` ladder: center, center·f, then center·f² or center/f.
Every LR sits on the ladder ``base_lr · f^k`` so identical runs share a cache key across strategies.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from loratune.errors import ConfigError
from loratune.search.space import Variant


@dataclass(frozen=True)
class LRPlan:
    base_lr: float = 2e-4
    base_scaling: float = 2.0  # the scaling base_lr was chosen for (alpha = 2r)
    factor: float = 2.0
    max_runs: int = 3  # runs per variant; 1 = no sweep (the scaled center only)
    min_lr: float = 1e-6
    max_lr: float = 1e-2

    def __post_init__(self) -> None:
        if not self.base_lr > 0:
            raise ConfigError(f"learning rate must be positive, got {self.base_lr}", "use e.g. --lr 2e-4")
        if self.factor <= 1:
            raise ConfigError(f"LR sweep factor must be > 1, got {self.factor}", "use e.g. 2")
        if self.max_runs < 1:
            raise ConfigError(f"LR runs per variant must be >= 1, got {self.max_runs}", "use 1 (no sweep) to 3")

    def snap(self, lr: float) -> float:
        """The ladder point ``base_lr · factor^k`` nearest to ``lr`` (in log space), clipped."""
        k = round(math.log(lr / self.base_lr) / math.log(self.factor))
        snapped = self.base_lr * self.factor**k
        return float(f"{min(self.max_lr, max(self.min_lr, snapped)):.6g}")

    def center(self, variant: Variant) -> float:
        # Keep lr·scaling constant: with B initialised to zero, Adam's first updates move ΔW = s·BA by ≈ s·lr.
        return self.snap(self.base_lr * self.base_scaling / variant.scaling)


@dataclass
class LRSweep:
    best_lr: float
    best_loss: float
    tried: dict[float, float]  # lr → val loss (inf when diverged/pruned/failed)


def tune_lr(evaluate: Callable[[float], float], plan: LRPlan, center: float) -> LRSweep:
    """Walk the ladder from ``center``: try center and center·f; keep going the way that helps.

    ``evaluate(lr)`` returns the validation loss (inf for a diverged or failed run).
    """
    tried: dict[float, float] = {}

    def at(lr: float) -> float:
        lr = plan.snap(lr)
        if lr not in tried:
            loss = evaluate(lr)
            tried[lr] = loss if math.isfinite(loss) else math.inf
        return tried[lr]

    f = plan.factor
    at(center)
    if plan.max_runs >= 2:
        up = at(center * f)
        direction = f if up < tried[plan.snap(center)] else 1 / f
        probe = center * f if direction == f else center
        while len(tried) < plan.max_runs:
            nxt = plan.snap(probe * direction)
            if nxt in tried:  # clipped at a bound
                break
            before = min(tried.values())
            if at(nxt) >= before:
                break
            probe = nxt
    best_lr = min(tried, key=lambda k: (tried[k], k))
    return LRSweep(best_lr=best_lr, best_loss=tried[best_lr], tried=tried)
