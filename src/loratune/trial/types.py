"""Plain values a trial takes and returns: no torch here, so search and report can import them freely."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from loratune.errors import ConfigError

SCHEDULERS = ("cosine", "linear", "constant")
COMPUTE_DTYPES = ("bf16", "fp32")
STATUSES = ("ok", "diverged", "pruned", "failed")
CLS_METRICS = ("val_accuracy_before", "val_accuracy_after", "val_f1_before", "val_f1_after")
LEGACY_EXTRA = ("estimated_memory_bytes", "warnings")  # typed fields once kept in TrialResult.extra


@dataclass(frozen=True)
class TrainSettings:
    """How one trial trains. ``max_steps`` (optimizer steps) wins over ``epochs`` when both are set."""

    learning_rate: float = 2e-4
    batch_size: int = 8
    grad_accum: int = 1
    max_steps: int | None = None
    epochs: float = 1.0
    warmup_ratio: float = 0.05
    scheduler: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 512
    grad_checkpointing: bool = False
    seed: int = 0
    compute_dtype: str = "bf16"
    eval_every: int | None = None
    eval_batches: int | None = None

    def __post_init__(self) -> None:
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ConfigError(f"learning_rate must be a positive number, got {self.learning_rate}", "use e.g. 2e-4")
        for name in ("batch_size", "grad_accum", "max_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}", f"use e.g. {name}=8")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1, got {self.max_steps}", "leave it unset to train by epochs")
        if self.max_steps is None and not self.epochs > 0:
            raise ConfigError(f"epochs must be positive, got {self.epochs}", "use e.g. epochs=1 or set max_steps")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}", "use e.g. 0.05")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"unknown scheduler {self.scheduler!r}", f"use one of {', '.join(SCHEDULERS)}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}", "use e.g. 0.0 or 0.01")
        if self.max_grad_norm < 0:
            raise ConfigError(f"max_grad_norm must be >= 0, got {self.max_grad_norm}", "use 0 to turn clipping off")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ConfigError(
                f"unknown compute_dtype {self.compute_dtype!r}", f"use one of {', '.join(COMPUTE_DTYPES)}"
            )
        if self.eval_every is not None and self.eval_every < 1:
            raise ConfigError(
                f"eval_every must be >= 1, got {self.eval_every}", "leave it unset to evaluate at the end"
            )
        if self.eval_batches is not None and self.eval_batches < 1:
            raise ConfigError(f"eval_batches must be >= 1, got {self.eval_batches}", "leave it unset to use all")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown training setting(s): {', '.join(unknown)}", f"known: {', '.join(sorted(known))}"
            )
        return cls(**data)


@dataclass
class TrialResult:
    """What one trial measured. Losses are mean token cross-entropy (nats); ppl = exp(loss)."""

    status: str = "ok"
    message: str = ""
    val_loss_before: float | None = None
    val_loss_after: float | None = None
    val_ppl_before: float | None = None
    val_ppl_after: float | None = None
    ref_ppl_before: float | None = None
    ref_ppl_after: float | None = None
    # Classification trials (seq-cls) only: validation accuracy and macro-F1 (trial/metrics.py).
    val_accuracy_before: float | None = None
    val_accuracy_after: float | None = None
    val_f1_before: float | None = None
    val_f1_after: float | None = None
    train_loss_final: float | None = None
    peak_memory_bytes: int | None = None
    wall_seconds: float = 0.0
    tokens_per_second: float = 0.0
    train_tokens: int = 0
    trainable_params: int = 0
    steps: int = 0
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    val_curve: list[tuple[int, float]] = field(default_factory=list)
    adapter_dir: str | None = None
    # The memory estimate (budget.memory) for this run, set by the search: the report sets it against
    # peak_memory_bytes. None when nothing estimated it.
    estimated_memory_bytes: int | None = None
    # What building the adapter warned about (e.g. a suffix matching more than intended), one line each.
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["loss_curve"] = [[int(s), _finite(v)] for s, v in self.loss_curve]
        d["val_curve"] = [[int(s), _finite(v)] for s, v in self.val_curve]
        for k in ("val_loss_before", "val_loss_after", "val_ppl_before", "val_ppl_after"):
            d[k] = _finite(d[k])
        for k in ("ref_ppl_before", "ref_ppl_after", "train_loss_final", *CLS_METRICS):
            d[k] = _finite(d[k])
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialResult:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in known}
        # Records written before these were typed fields kept them in ``extra`` (study.db files on disk).
        extra = dict(kw.get("extra") or {})
        for name in LEGACY_EXTRA:
            if name in extra:
                legacy = extra.pop(name)
                if kw.get(name) in (None, []):
                    kw[name] = legacy
        kw["extra"] = extra
        kw["warnings"] = [str(w) for w in kw.get("warnings") or []]
        kw["loss_curve"] = [(int(s), float(v) if v is not None else math.nan) for s, v in data.get("loss_curve", [])]
        kw["val_curve"] = [(int(s), float(v) if v is not None else math.nan) for s, v in data.get("val_curve", [])]
        if kw.get("status", "ok") not in STATUSES:
            raise ConfigError(f"unknown trial status {kw['status']!r}", f"one of {', '.join(STATUSES)}")
        return cls(**kw)


def _finite(v: float | None) -> float | None:
    """JSON has no NaN/inf: a diverged value is written as null."""
    if v is None or not math.isfinite(v):
        return None
    return float(v)
