"""Peak memory of PEFT training steps on random tokens, to check ``budget.memory``'s estimate against.

The counter itself (live tensor storage on the CPU, the allocator's counters on CUDA) is
:class:`loratune.trial.peak_memory.PeakMemory`, which a trial also uses for its own first steps;
this module adds the benchmark harness around it. The PEFT model is built exactly as a trial
builds it (:func:`loratune.trial.peft_model.build_peft_model`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from loratune.budget.memory import MemorySettings
from loratune.budget.spec import AdapterSpec
from loratune.errors import ConfigError
from loratune.trial.peak_memory import CPU_MODES, PeakMemory

__all__ = ["CPU_MODES", "MeasuredMemory", "PeakMemory", "measure_training_peak", "wrap_with_peft"]


@dataclass(frozen=True)
class MeasuredMemory:
    device: str
    peak_bytes: int  # live tensor bytes at the peak (CUDA: max_memory_allocated)
    peak_reserved_bytes: int | None  # CUDA only: the allocator's pool at its peak
    weights_bytes: int  # resident before the first step (base + adapter)
    steps: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def wrap_with_peft(model: Any, spec: AdapterSpec, anatomy: Any | None = None) -> Any:
    """``get_peft_model`` exactly as a trial builds it (one place decides the PEFT config); a
    ``…ForSequenceClassification`` model as a classification trial does (SEQ_CLS: the head is trained)."""
    from loratune.anatomy.extract import anatomy_from_model
    from loratune.trial.peft_model import build_peft_model

    anatomy = anatomy or anatomy_from_model(model, source="measured")
    if _is_seq_cls(model):
        peft_model, _warnings = build_peft_model(model, anatomy, spec, 1000, None, task_type="SEQ_CLS")
        return peft_model
    peft_model, _warnings = build_peft_model(model, anatomy, spec, total_steps=1000, extra=None)
    return peft_model


def _is_seq_cls(model: Any) -> bool:
    return type(model).__name__.endswith("ForSequenceClassification")


def measure_training_peak(
    model: Any,
    spec: AdapterSpec,
    settings: MemorySettings,
    steps: int = 2,
    *,
    seed: int = 0,
    warmup: bool = False,
    device: str | None = None,
) -> MeasuredMemory:
    """Wrap ``model`` with PEFT, run ``steps`` forward/backward/optimizer steps on
    random tokens of shape (batch_size, seq_len), and report the peak.

    The loop mirrors transformers' Trainer: ``loss = model(input_ids, labels=...).loss`` (the output
    object and its logits are dropped before backward) and ``zero_grad(set_to_none=True)``. The peak
    of a steady-state step needs the optimizer states, which AdamW creates in its first ``step()``:
    with ``steps=2`` step 2 holds them; ``warmup=True`` instead runs one cheap 8-token step first (not
    timed, still inside the measurement) so that ``steps=1`` suffices on slow CPUs.
    ``device`` overrides ``settings.device`` (which names only the kind, cpu or cuda): e.g. ``cuda:1``.
    The model is left wrapped and trained.
    """
    import torch

    from loratune.trial.peft_model import enable_checkpointing

    if steps < 1:
        raise ConfigError(f"steps must be at least 1, got {steps}", "use steps=2")
    device = device or settings.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("CUDA is not available on this machine", "measure with device cpu")
    from loratune.models.quantized import quant_of

    if settings.quant != quant_of(model):
        # A quantized base is how the model was loaded (models/quantized.py), not something a step changes.
        raise ConfigError(
            f"settings say quant={settings.quant} but the model was loaded with quant={quant_of(model)}",
            "load the base with loratune.models.quantized.load_quantized (or quantize_loaded) first",
        )
    peft_model = wrap_with_peft(model, spec)
    if settings.quant == "none":
        peft_model.to(device)  # a bitsandbytes base is already placed (device_map) and cannot be moved freely
    peft_model.train()
    if settings.grad_checkpointing:
        enable_checkpointing(peft_model.get_base_model())
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = _optimizer(settings.optimizer, params)
    vocab = peft_model.config.vocab_size
    gen = torch.Generator().manual_seed(seed)
    num_labels = int(model.config.num_labels) if _is_seq_cls(model) else 0

    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(settings.dtype, torch.float32)

    def step(batch: int, seq: int) -> None:
        ids = torch.randint(0, vocab, (batch, seq), generator=gen).to(device)
        # a classifier's labels: one class id per row (transformers' loss is the same cross-entropy)
        labels = torch.randint(0, num_labels, (batch,), generator=gen).to(device) if num_labels else ids
        with torch.autocast(device.split(":")[0], dtype=autocast_dtype, enabled=settings.autocast):
            loss = peft_model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    pm = PeakMemory(device, track=[peft_model])
    with pm:
        weights = pm.current_bytes
        if warmup:
            step(1, min(8, settings.seq_len))
        t0 = time.perf_counter()
        for _ in range(steps):
            step(settings.batch_size, settings.seq_len)
        seconds = time.perf_counter() - t0
    return MeasuredMemory(
        device=device,
        peak_bytes=pm.peak_bytes,
        peak_reserved_bytes=pm.peak_reserved_bytes,
        weights_bytes=weights,
        steps=steps,
        seconds=seconds,
    )


def _optimizer(name: str, params: list[Any]) -> Any:
    import torch

    if name == "adamw":
        # foreach=False: the per-parameter loop; foreach's fused temporaries are a CUDA speed trade.
        return torch.optim.AdamW(params, lr=1e-4, foreach=False)
    if name == "sgd":
        return torch.optim.SGD(params, lr=1e-4)
    raise ConfigError(f"measurement supports adamw and sgd, not {name!r}", "use --optimizer adamw")
