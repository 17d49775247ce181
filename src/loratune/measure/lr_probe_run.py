"""``recommend --probe`` as one library call: the range test of a recommendation on the user's model and data.

:func:`check_probe` runs before anything heavy (no torch: bad arguments fail in a fraction of a second);
:func:`probe_recommendation` loads the model once, tokenizes the data, builds the adapter and the batch the
recommendation gives and calls :func:`~loratune.measure.lr_probe.probe_learning_rate`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loratune.errors import ConfigError
from loratune.measure.lr_probe import MAX_LR, MIN_LR, PROBE_STEPS, LRProbe, check_range, probe_learning_rate


@dataclass(frozen=True)
class ProbeRequest:
    """What the probe runs on; the adapter and the batch come from the recommendation."""

    model: str  # a catalog name, a directory or a .gguf (as every command takes it)
    data: str  # a data file or "demo"
    steps: int = PROBE_STEPS
    min_lr: float = MIN_LR
    max_lr: float = MAX_LR
    device: str = "auto"
    dtype: str = "auto"  # the frozen base's compute dtype (trial/precision.py)
    allow_pickle: bool = False
    val_fraction: float = 0.1  # held out as `train` holds it out: the probe trains on the same split


def check_probe(req: ProbeRequest, recommendation: dict[str, Any]) -> None:
    """Everything checkable before weights load: the probe's numbers, the device's spelling, the dtype, and
    that the recommendation is a causal-LM one (a classifier's head would need the classification loop)."""
    from loratune.trial.device import check_device_syntax
    from loratune.trial.precision import check_compute_dtype

    check_range(req.steps, req.min_lr, req.max_lr)
    check_device_syntax(req.device)
    check_compute_dtype(req.dtype)
    if recommendation.get("config", {}).get("task_type") == "SEQ_CLS":
        raise ConfigError(
            "--probe measures causal-LM training; this recommendation trains a classifier (SEQ_CLS)",
            "drop --probe, or tune the LR with `loratune search`",
        )


def probe_recommendation(
    req: ProbeRequest,
    recommendation: dict[str, Any],
    *,
    on_start: Callable[[str], None] | None = None,
    on_step: Callable[[int, float, float], None] | None = None,
    progress: bool = False,
) -> LRProbe:
    """The range test of ``recommendation`` (``Recommendation.to_dict()``): its adapter (``config``), its
    micro-batch × accumulation, sequence length, checkpointing and base quantization (``training``).
    ``on_start(description)`` once the model is loaded and the data tokenized (for the header line);
    ``progress``: a bar on stderr over the steps (trial/progress.py)."""
    check_probe(req, recommendation)
    from loratune.budget.spec import AdapterSpec
    from loratune.models import resolve_source
    from loratune.trial.data_prep import prepare, read
    from loratune.trial.device import describe, resolve_device
    from loratune.trial.precision import resolve_compute_dtype
    from loratune.trial.runner import TrialRunner, quiet_libraries
    from loratune.trial.types import TrainSettings

    raw = read(req.data)  # a bad file fails before the weights load
    spec = AdapterSpec.from_peft_kwargs(recommendation["config"])
    training = recommendation["training"]
    device = resolve_device(req.device)
    dtype = resolve_compute_dtype(req.dtype, device)
    quant = training.get("quantization") or "none"
    quiet_libraries()
    runner = TrialRunner(
        resolve_source(req.model), compute_dtype=dtype, device=device, allow_pickle=req.allow_pickle, quant=quant
    )
    settings = TrainSettings(
        batch_size=int(training["per_device_train_batch_size"]),
        grad_accum=int(training["gradient_accumulation_steps"]),
        max_length=int(training["seq_len"]),
        grad_checkpointing=bool(training.get("gradient_checkpointing", False)),
        compute_dtype=dtype,
    )
    prepared = prepare(raw, runner.tokenizer, max_length=settings.max_length, val_fraction=req.val_fraction)
    if on_start is not None:
        on_start(
            f"{runner.label} — range test of {spec.method} r={spec.r}, {req.steps} steps × "
            f"{settings.batch_size}×{settings.grad_accum} examples of {len(prepared.train)}, LR "
            f"{req.min_lr:g} → {req.max_lr:g}; " + describe(device, dtype, quant)
        )
    return probe_learning_rate(
        runner,
        spec,
        settings,
        prepared.train,
        steps=req.steps,
        min_lr=req.min_lr,
        max_lr=req.max_lr,
        on_step=on_step,
        progress=progress,
    )
