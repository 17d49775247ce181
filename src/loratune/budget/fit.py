"""Does a step fit in a given VRAM? The largest batch and sequence that do, and what to give up first.

:data:`FIT_ORDER` is the one memory-fit order of loratune — ``budget --vram`` prices each lever
alone against the current config (so the list also shows how little some of them buy), and
``recommend --vram`` (advise/fit.py) applies them in turn. It is the seed's troubleshooting order
(seed 000 실전 팁 '메모리 부족 시': 1. r 감소 (8 → 4), 2. Target modules 감소 (Attention+FFN →
Attention만), 3. Batch size 감소), followed by the two levers the literature adds: gradient
checkpointing [Chen et al. 1604.06174; 2205.05198 §4] and a 4-bit base [QLoRA 2305.14314].
Floors: r stops at :data:`R_FLOOR` (the seed's "8 → 4"), modules at q + v, the micro-batch at 1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

from loratune.anatomy.targets import resolve
from loratune.anatomy.types import ATTENTION_ROLES, MLP_ROLES, Anatomy
from loratune.budget.memory import MemorySettings, estimate_memory
from loratune.budget.params import ParamBudget, count_params
from loratune.budget.spec import AdapterSpec
from loratune.errors import ConfigError, LoratuneError

SEED_MEMORY = "seed 000 실전 팁 '메모리 부족 시'"
CHECKPOINTING = "Chen et al. arXiv:1604.06174; arXiv:2205.05198 §4"
QLORA_4BIT = "QLoRA arXiv:2305.14314"


@dataclass(frozen=True)
class FitLever:
    """One way to save memory, in the order it is tried, with where the order comes from."""

    name: str
    source: str


FIT_ORDER: tuple[FitLever, ...] = (
    FitLever("lower r", SEED_MEMORY),
    FitLever("fewer modules", SEED_MEMORY),
    FitLever("smaller batch", SEED_MEMORY),
    FitLever("gradient checkpointing", CHECKPOINTING),
    FitLever("4-bit base", QLORA_4BIT),
)
LEVER_SOURCES = {lever.name: lever.source for lever in FIT_ORDER}
R_FLOOR = 4  # the seed's smallest rank: "r 감소 (8 → 4)", also its 메모리 제약 preset
BATCH_FLOOR = 1
MODULE_LADDER = ("all", "attention", "qv")  # seed 000 §3.3: 전략 2 → 전략 1 → 전략 3


def lower_r(r: int) -> int | None:
    """The next rank down (halved, not below :data:`R_FLOOR`), or None at the floor."""
    return max(R_FLOOR, r // 2) if r > R_FLOOR else None


def fewer_modules(strategy: str) -> str | None:
    """The next narrower strategy of :data:`MODULE_LADDER`, or None at q + v (or off the ladder)."""
    if strategy not in MODULE_LADDER[:-1]:
        return None
    return MODULE_LADDER[MODULE_LADDER.index(strategy) + 1]


def smaller_batch(micro_batch: int) -> int | None:
    """Half the micro-batch (gradient accumulation doubles to keep the effective batch), or None at 1."""
    return micro_batch // 2 if micro_batch > BATCH_FLOOR else None


# Upper bound for the sequence search when the config gives no max_position_embeddings.
_SEQ_CAP = 131072
_BATCH_CAP = 65536


@dataclass(frozen=True)
class GiveUp:
    """One way to save memory: what changes, the total after it, and what it saves."""

    action: str
    change: dict[str, object]
    total_bytes: int
    saves_bytes: int
    fits: bool
    source: str


@dataclass
class FitReport:
    fits: bool
    vram_bytes: int
    total_bytes: int
    headroom_bytes: int  # vram − total; negative when it does not fit
    max_batch_size: int  # at the given seq_len; 0 when even batch 1 does not fit
    max_seq_len: int  # at the given batch size; 0 when even 1 token does not fit
    give_up: list[GiveUp] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _total(anatomy: Anatomy, spec: AdapterSpec, settings: MemorySettings, pb: ParamBudget | None = None) -> int:
    return estimate_memory(anatomy, spec, settings, pb).total_bytes


def _largest(fits: Callable[[int], bool], lo: int, hi: int) -> int:
    """Largest n in [lo, hi] with fits(n), given fits is monotone (more tokens, more memory)."""
    if not fits(lo):
        return 0
    n = lo
    while n < hi and fits(min(2 * n, hi)):
        n = min(2 * n, hi)
    if n == hi:
        return hi
    good, bad = n, min(2 * n, hi)
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if fits(mid) else (good, mid)
    return good


def _strategy_of(roles: set[str], anatomy: Anatomy) -> str | None:
    """Which rung of :data:`MODULE_LADDER` a set of adapted roles stands on (None: already q + v,
    or no q/v to step down to)."""
    if roles & MLP_ROLES and roles & ATTENTION_ROLES:
        return "all"
    if roles - {"attn_q", "attn_v"} and {"attn_q", "attn_v"} <= {m.role for m in anatomy.modules}:
        return "attention"
    return None


_FEWER_LABELS = {"attention": "attention only (drop the MLP modules)", "qv": "q and v only"}


def _fewer_modules(anatomy: Anatomy, spec: AdapterSpec) -> tuple[str, AdapterSpec] | None:
    """The next narrower strategy than the one ``spec`` adapts, as a role shorthand."""
    current = _strategy_of({m.role for m in resolve(anatomy, spec.targets).modules}, anatomy)
    nxt = fewer_modules(current) if current else None
    if nxt is None:
        return None
    return _FEWER_LABELS[nxt], replace(spec, targets=replace(spec.targets, target_modules=(nxt,)))


def give_up_options(anatomy: Anatomy, spec: AdapterSpec, settings: MemorySettings, vram_bytes: int) -> list[GiveUp]:
    """Each lever of :data:`FIT_ORDER`, in that order, priced alone against ``spec``/``settings``."""
    base = _total(anatomy, spec, settings)
    out: list[GiveUp] = []

    def add(action: str, change: dict[str, object], total: int, source: str) -> None:
        out.append(GiveUp(action, change, total, base - total, total <= vram_bytes, source))

    for lever in FIT_ORDER:
        if lever.name == "lower r":
            r2 = lower_r(spec.r)
            if r2 is not None:
                s2 = replace(spec, r=r2, alpha=spec.alpha * r2 / spec.r, rank_pattern={})
                add(f"lower r {spec.r} → {r2}", {"r": r2}, _total(anatomy, s2, settings), lever.source)
        elif lever.name == "fewer modules":
            fewer = _fewer_modules(anatomy, spec)
            if fewer is not None:
                # The shorthand may match nothing in this model: then there is no such option.
                with contextlib.suppress(LoratuneError):
                    t = _total(anatomy, fewer[1], settings)
                    add(fewer[0], {"targets": fewer[1].targets.target_modules}, t, lever.source)
        elif lever.name == "smaller batch":
            b2 = smaller_batch(settings.batch_size)
            if b2 is not None:
                add(
                    f"batch size {settings.batch_size} → {b2} (keep the effective batch with gradient accumulation ×2)",
                    {"batch_size": b2, "grad_accum_factor": 2},
                    _total(anatomy, spec, settings.replace(batch_size=b2)),
                    lever.source,
                )
        elif lever.name == "gradient checkpointing":
            if not settings.grad_checkpointing:
                add(
                    "gradient checkpointing (≈ +30 % step time)",
                    {"grad_checkpointing": True},
                    _total(anatomy, spec, settings.replace(grad_checkpointing=True)),
                    lever.source,
                )
        elif lever.name == "4-bit base" and settings.quant != "4bit" and settings.device == "cuda":
            # Priced as the QLoRA recipe runs it: bf16 autocast over the 4-bit base (Trainer bf16=True); without
            # autocast a k-bit base's activations are fp32 (budget.memory.estimate_memory).
            s4 = settings.replace(
                quant="4bit", dtype="bf16" if settings.dtype == "fp32" else settings.dtype, autocast=True
            )
            add("4-bit NF4 base (QLoRA)", {"quant": "4bit"}, _total(anatomy, spec, s4), lever.source)
    return out


def fit_report(anatomy: Anatomy, spec: AdapterSpec, settings: MemorySettings, vram_bytes: int) -> FitReport:
    if vram_bytes <= 0:
        raise ConfigError(f"VRAM must be positive, got {vram_bytes} bytes", "use e.g. --vram 8GB")
    pb = count_params(anatomy, spec)  # the searches below change only batch and length: count once
    total = _total(anatomy, spec, settings, pb)
    seq_cap = anatomy.facts.max_positions or _SEQ_CAP

    def fits_with(**change: int) -> bool:
        return _total(anatomy, spec, settings.replace(**change), pb) <= vram_bytes

    max_batch = _largest(lambda b: fits_with(batch_size=b), 1, _BATCH_CAP)
    max_seq = _largest(lambda n: fits_with(seq_len=n), 1, seq_cap)
    fits = total <= vram_bytes
    return FitReport(
        fits=fits,
        vram_bytes=vram_bytes,
        total_bytes=total,
        headroom_bytes=vram_bytes - total,
        max_batch_size=max_batch,
        max_seq_len=max_seq,
        give_up=[] if fits else give_up_options(anatomy, spec, settings, vram_bytes),
    )


__all__ = [
    "BATCH_FLOOR",
    "FIT_ORDER",
    "MODULE_LADDER",
    "R_FLOOR",
    "FitLever",
    "FitReport",
    "GiveUp",
    "fewer_modules",
    "fit_report",
    "give_up_options",
    "lower_r",
    "smaller_batch",
]
