"""Does a step fit in a given VRAM? The largest batch and sequence that do, and what to give up first.

The give-up order is the seed's troubleshooting order ("memory short → lower r, fewer modules,
smaller batch"), followed by the two levers the literature adds: gradient checkpointing
[Chen et al. 1604.06174; 2205.05198] and a 4-bit base [QLoRA 2305.14314]. Each option is priced
alone against the current config, so the list also shows how little some of them buy.
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


def _fewer_modules(anatomy: Anatomy, spec: AdapterSpec) -> tuple[str, AdapterSpec] | None:
    """The seed's strategies from large to small: attention + FFN → attention → q + v."""
    roles = {m.role for m in resolve(anatomy, spec.targets).modules}
    if roles & MLP_ROLES and roles & ATTENTION_ROLES:
        shorthand, label = "attention", "attention only (drop the MLP modules)"
    elif roles - {"attn_q", "attn_v"} and {"attn_q", "attn_v"} <= {m.role for m in anatomy.modules}:
        shorthand, label = "qv", "q and v only"
    else:
        return None
    return label, replace(spec, targets=replace(spec.targets, target_modules=(shorthand,)))


def give_up_options(anatomy: Anatomy, spec: AdapterSpec, settings: MemorySettings, vram_bytes: int) -> list[GiveUp]:
    base = _total(anatomy, spec, settings)
    out: list[GiveUp] = []

    def add(action: str, change: dict[str, object], total: int, source: str) -> None:
        out.append(GiveUp(action, change, total, base - total, total <= vram_bytes, source))

    if spec.r > 1:
        r2 = max(1, spec.r // 2)
        s2 = replace(spec, r=r2, alpha=spec.alpha * r2 / spec.r, rank_pattern={})
        add(f"lower r {spec.r} → {r2}", {"r": r2}, _total(anatomy, s2, settings), "seed: troubleshooting")
    fewer = _fewer_modules(anatomy, spec)
    if fewer is not None:
        # The shorthand may match nothing in this model: then there is no such option.
        with contextlib.suppress(LoratuneError):
            add(fewer[0], {"targets": fewer[1].targets.target_modules}, _total(anatomy, fewer[1], settings), "seed")
    if settings.batch_size > 1:
        b2 = settings.batch_size // 2
        add(
            f"batch size {settings.batch_size} → {b2} (keep the effective batch with gradient accumulation ×2)",
            {"batch_size": b2, "grad_accum_factor": 2},
            _total(anatomy, spec, settings.replace(batch_size=b2)),
            "seed: troubleshooting",
        )
    if not settings.grad_checkpointing:
        add(
            "gradient checkpointing (≈ +30 % step time)",
            {"grad_checkpointing": True},
            _total(anatomy, spec, settings.replace(grad_checkpointing=True)),
            "1604.06174; 2205.05198",
        )
    if settings.quant != "4bit" and settings.device == "cuda":
        s4 = settings.replace(quant="4bit", dtype="bf16" if settings.dtype == "fp32" else settings.dtype)
        add("4-bit NF4 base (QLoRA)", {"quant": "4bit"}, _total(anatomy, spec, s4), "QLoRA 2305.14314")
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


__all__ = ["FitReport", "GiveUp", "fit_report", "give_up_options"]
