"""Fit a recommended config into the user's VRAM, changing it in a stated order, each step listed.

The order and its floors are :data:`loratune.budget.fit.FIT_ORDER` (the one definition that
``budget --vram`` uses too): seed 000 실전 팁 '메모리 부족 시' — 1. lower r (down to 4),
2. fewer modules (attention + FFN → attention → q + v), 3. smaller batch (down to 1); then the
literature's two levers: 4. gradient checkpointing [Chen et al. 1604.06174; 2205.05198 §4],
5. a 4-bit NF4 base [QLoRA 2305.14314]. Each lever is applied until it reaches its floor. Once it fits,
quality cuts that the later steps made unnecessary are given back (modules first, then r), so a
4-bit base does not leave r=4 q+v behind when r=16 on every module fits too. When nothing fits,
the smallest config's memory is the minimum VRAM that would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from loratune.advise import explain as S
from loratune.budget.fit import FIT_ORDER, MODULE_LADDER, R_FLOOR, fewer_modules, lower_r, smaller_batch
from loratune.errors import LoratuneError

__all__ = ["R_FLOOR", "FitOutcome", "FitStep", "Knobs", "fit_to_vram"]


@dataclass(frozen=True)
class Knobs:
    """What the fit may change."""

    r: int
    strategy: str  # "all" | "attention" | "qv" (advise/modules.py), or "custom" (never changed)
    targets: tuple[str, ...]
    micro_batch: int
    grad_accum: int
    grad_checkpointing: bool = False
    quant: str = "none"  # "none" | "4bit" (budget/memory.py QUANTS)


@dataclass(frozen=True)
class FitStep:
    action: str
    change: str
    total_bytes: int
    fits: bool
    source: str

    def to_dict(self) -> dict[str, object]:
        return {
            "action": self.action,
            "change": self.change,
            "total_bytes": self.total_bytes,
            "fits": self.fits,
            "source": self.source,
        }


@dataclass
class FitOutcome:
    knobs: Knobs
    total_bytes: int
    fits: bool
    start_bytes: int
    steps: list[FitStep] = field(default_factory=list)
    minimum_vram_bytes: int | None = None  # set when nothing fits


Measure = Callable[[Knobs], int]
TargetsFor = Callable[[str], tuple[str, ...]]


def fit_to_vram(start: Knobs, vram_bytes: int, measure: Measure, targets_for: TargetsFor) -> FitOutcome:
    """Apply the stated steps until ``measure(knobs) <= vram_bytes``; ``targets_for(strategy)`` names
    the modules of a narrower strategy (it may raise a LoratuneError when the model has none)."""
    cur, total = start, measure(start)
    out = FitOutcome(start, total, total <= vram_bytes, total)

    def step(new: Knobs, action: str, change: str, source: str) -> bool:
        nonlocal cur, total
        cur, total = new, measure(new)
        out.steps.append(FitStep(action, change, total, total <= vram_bytes, source))
        return total <= vram_bytes

    done = total <= vram_bytes
    for lever in FIT_ORDER:
        src = lever.source
        if lever.name == "lower r":
            while not done and (r2 := lower_r(cur.r)) is not None:
                done = step(replace(cur, r=r2), lever.name, f"r {cur.r} → {r2} (alpha scaled with it)", src)
        elif lever.name == "fewer modules":
            while not done and (nxt := fewer_modules(cur.strategy)) is not None:
                try:
                    names = targets_for(nxt)
                except LoratuneError:
                    break
                if names == cur.targets:
                    cur = replace(cur, strategy=nxt)
                    continue
                done = step(
                    replace(cur, strategy=nxt, targets=names),
                    lever.name,
                    f"{cur.strategy} → {nxt}: {', '.join(names)}",
                    src,
                )
        elif lever.name == "smaller batch":
            # The effective batch is kept through gradient accumulation.
            while not done and (b2 := smaller_batch(cur.micro_batch)) is not None:
                done = step(
                    replace(cur, micro_batch=b2, grad_accum=cur.grad_accum * 2),
                    lever.name,
                    f"micro-batch {cur.micro_batch} → {b2}, gradient accumulation {cur.grad_accum} → "
                    f"{cur.grad_accum * 2}",
                    src,
                )
        elif lever.name == "gradient checkpointing":
            if not done and not cur.grad_checkpointing:
                done = step(
                    replace(cur, grad_checkpointing=True),
                    lever.name,
                    "on: keep one input per layer, recompute the rest (≈ +30 % step time)",
                    src,
                )
        elif lever.name == "4-bit base" and not done and cur.quant != "4bit":
            done = step(replace(cur, quant="4bit"), lever.name, "NF4 frozen weights (QLoRA)", src)

    if done:
        # Give back quality cuts that the later steps made unnecessary: widest modules first, then r.
        if start.strategy in MODULE_LADDER and cur.strategy != start.strategy:
            for wider in MODULE_LADDER[MODULE_LADDER.index(start.strategy) : MODULE_LADDER.index(cur.strategy)]:
                trial = replace(
                    cur, strategy=wider, targets=start.targets if wider == start.strategy else targets_for(wider)
                )
                if measure(trial) <= vram_bytes:
                    step(trial, "give back modules", f"{cur.strategy} → {wider} still fits", S.LORATUNE)
                    break
        r = cur.r
        while r < start.r and measure(replace(cur, r=min(start.r, r * 2))) <= vram_bytes:
            r = min(start.r, r * 2)
        if r != cur.r:
            step(replace(cur, r=r), "give back r", f"r {cur.r} → {r} still fits", S.LORATUNE)
    out.knobs, out.total_bytes, out.fits = cur, total, total <= vram_bytes
    if not out.fits:
        out.minimum_vram_bytes = total
    return out
