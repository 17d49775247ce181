"""Plain values a trial takes and returns: no torch here, so search and report can import them freely."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from loratune.errors import ConfigError

SCHEDULERS = ("cosine", "linear", "constant")
COMPUTE_DTYPES = ("bf16", "fp16", "fp32")  # fp16: CUDA only, trained with a loss scaler
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
        # Every value checked here, once, whoever builds the settings (CLI flags, a --config file, the
        # search): a wrong type, NaN/inf or a value with no meaning is one ConfigError naming the field
        # and its flag, before any model is loaded.
        for name, (kind, low, high, bounds, example) in _RULES.items():
            value = getattr(self, name)
            if value is None and name in _OPTIONAL:
                continue
            problem = _check_number(value, kind, low, high, bounds)
            if problem:
                raise ConfigError(f"{_label(name)} {problem}, got {value!r}", f"use e.g. {_example(name, example)}")
        if not isinstance(self.grad_checkpointing, bool):
            raise ConfigError(
                f"{_label('grad_checkpointing')} must be true or false, got {self.grad_checkpointing!r}",
                "use true or false",
            )
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"unknown scheduler {self.scheduler!r}", f"use one of {', '.join(SCHEDULERS)}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ConfigError(
                f"unknown compute_dtype {self.compute_dtype!r}", f"use one of {', '.join(COMPUTE_DTYPES)}"
            )

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


# The flag that sets each field on `loratune train` (named in messages next to the field).
FLAGS = {
    "learning_rate": "--lr",
    "batch_size": "--batch-size",
    "grad_accum": "--grad-accum",
    "max_steps": "--max-steps",
    "epochs": "--epochs",
    "warmup_ratio": "--warmup-ratio",
    "weight_decay": "--weight-decay",
    "max_length": "--max-length",
    "seed": "--seed",
    "eval_every": "--eval-every",
    "eval_batches": "--eval-batches",
    "grad_checkpointing": "--grad-checkpointing",
}
MAX_SEED = 2**32 - 1  # numpy's and most seeders' range; torch's is wider
# field: (int or float, low, high, bounds, example value); bounds "(]" excludes low, "[)" excludes high.
_RULES: dict[str, tuple[type, float, float, str, str]] = {
    "learning_rate": (float, 0.0, math.inf, "(]", "2e-4"),
    "batch_size": (int, 1, math.inf, "[]", "8"),
    "grad_accum": (int, 1, math.inf, "[]", "1"),
    "max_steps": (int, 1, math.inf, "[]", "100"),
    "epochs": (float, 0.0, math.inf, "(]", "1"),
    "warmup_ratio": (float, 0.0, 1.0, "[)", "0.05"),
    "weight_decay": (float, 0.0, math.inf, "[]", "0.01"),
    "max_grad_norm": (float, 0.0, math.inf, "[]", "1.0 (0 turns clipping off)"),
    "max_length": (int, 2, math.inf, "[]", "512"),
    "seed": (int, 0, MAX_SEED, "[]", "0"),
    "eval_every": (int, 1, math.inf, "[]", "50 (or leave it unset)"),
    "eval_batches": (int, 1, math.inf, "[]", "4 (or leave it unset)"),
}
_OPTIONAL = {"max_steps", "eval_every", "eval_batches"}


def _label(name: str) -> str:
    flag = FLAGS.get(name)
    return f"{flag} ({name})" if flag else name


def _example(name: str, example: str) -> str:
    flag = FLAGS.get(name)
    return f"{flag} {example}" if flag else f"{name}={example}"


def _check_number(value: Any, kind: type, low: float, high: float, bounds: str) -> str | None:
    """Why ``value`` is not a valid number of this kind in this interval (None when it is)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "must be a number" if kind is float else "must be an integer"
    if kind is int and not isinstance(value, int):
        return "must be an integer"
    if not math.isfinite(value):
        return "must be a finite number"
    low_open, high_open = bounds[0] == "(", bounds[1] == ")"
    if (value <= low) if low_open else (value < low):
        if high == math.inf:
            return f"must be greater than {_num(low)}" if low_open else f"must be at least {_num(low)}"
    elif not ((value >= high) if high_open else (value > high)):
        return None
    return f"must be in {bounds[0]}{_num(low)}, {_num(high)}{bounds[1]}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"
