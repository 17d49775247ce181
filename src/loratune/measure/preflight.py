"""Pre-flight on the user's own device: ``loratune budget MODEL … --measure``.

The model's shape is built with random weights from its config (a catalog name or a local config.json:
no weights are needed), quantized when asked (bitsandbytes, as a trial loads it), and two real training
steps of the exact config (adapter, batch × length, checkpointing, dtype) run on the device; the measured
peak is set beside ``budget.memory``'s estimate. Before anything is built, a shape the estimate says
cannot fit the device's free memory (CPU: available RAM) is refused with one line.

What is compared: the allocator's count (CUDA ``max_memory_allocated``; CPU: live tensor storage, the
same quantity) against the estimate without its CUDA-context/slack term (that term is outside the
allocator's counters; :func:`cuda_context_bytes` measures it on the machine).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loratune.budget.memory import MemoryEstimate, MemorySettings
from loratune.budget.spec import AdapterSpec
from loratune.errors import ConfigError
from loratune.units import fmt_bytes

MEASURE_STEPS = 2  # step 1 creates AdamW's state; step 2 holds it: the steady-state peak


@dataclass(frozen=True)
class Preflight:
    """The estimate and the measurement of the same step, side by side."""

    device: str
    estimate_bytes: int  # budget's total (CUDA: context and allocator slack included)
    estimate_allocated_bytes: int  # the same without the overhead term: what the allocator counts
    measured_bytes: int  # peak live tensor bytes over the steps (CUDA: max_memory_allocated)
    measured_reserved_bytes: int | None  # CUDA: the allocator's pool at its peak
    available_bytes: int  # free memory on the device before the model was built
    steps: int
    seconds: float
    weights: str = "random"  # the shape's weights are random: memory, not quality

    @property
    def rel_error(self) -> float:
        """(estimate − measured) / measured, on the allocator's count."""
        return (self.estimate_allocated_bytes - self.measured_bytes) / max(self.measured_bytes, 1)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rel_error": round(self.rel_error, 4)}


def available_bytes(device: str) -> int:
    """Free memory a run on ``device`` may take: CUDA ``mem_get_info``; CPU the smaller of the kernel's
    MemAvailable and the container's cgroup headroom (memory.max − memory.current)."""
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    candidates = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            candidates.append(max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    if not candidates:
        pages, size = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        candidates.append(int(pages) * int(size))
    return min(candidates)


def check_fits(estimate: MemoryEstimate, device: str, available: int) -> None:
    """One ConfigError (exit 2) when the estimate exceeds the device's free memory."""
    if estimate.total_bytes > available:
        where = "free GPU memory" if device.startswith("cuda") else "available RAM"
        raise ConfigError(
            f"--measure: the estimate ({fmt_bytes(estimate.total_bytes)}) exceeds this machine's {where} "
            f"({fmt_bytes(available)}) on {device}; nothing was built",
            "lower --batch-size or --seq-len, add --grad-checkpointing or --quant 4bit, or measure on a larger device",
        )


def random_model(config_dict: dict[str, Any], *, dtype: str, device: str, attn_impl: str = "sdpa") -> Any:
    """The model a config describes, with random weights in ``dtype``, built directly on ``device``."""
    import torch
    import transformers

    from loratune.errors import ModelSourceError
    from loratune.trial.speed import torch_dtype

    cfg = dict(config_dict)
    model_type = cfg.pop("model_type")
    cfg.pop("_source", None)
    try:
        config = transformers.AutoConfig.for_model(model_type, **cfg)
    except (ValueError, KeyError, TypeError) as e:
        raise ModelSourceError(
            f"config of model_type {model_type!r} is invalid: {str(e)[:160]}", "fix config.json"
        ) from None
    config.use_cache = False
    torch.manual_seed(0)
    with torch.device(device):
        model: Any = transformers.AutoModelForCausalLM.from_config(
            config, dtype=torch_dtype(dtype), attn_implementation=attn_impl
        )
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def run_preflight(
    config_dict: dict[str, Any],
    anatomy: Any,
    spec: AdapterSpec,
    settings: MemorySettings,
    estimate: MemoryEstimate,
    *,
    device: str,
    steps: int = MEASURE_STEPS,
) -> Preflight:
    """Refuse what cannot fit, else build the random-weight model and measure ``steps`` training steps."""
    from loratune.measure.peak_memory import measure_training_peak
    from loratune.models.quantized import check_bitsandbytes, quantize_in_memory

    free = available_bytes(device)
    check_fits(estimate, device, free)
    if settings.quant != "none":
        check_bitsandbytes()
    t0 = time.perf_counter()
    model = random_model(config_dict, dtype=settings.dtype, device=device, attn_impl=settings.attn_impl)
    if settings.quant != "none":
        model = quantize_in_memory(model, settings.quant, compute_dtype=settings.dtype, device=device)
    # The measurement's device is the one the user named (cuda:N); the estimate's is its kind.
    measured = measure_training_peak(model, spec, settings, steps=steps, device=device)
    return Preflight(
        device=device,
        estimate_bytes=estimate.total_bytes,
        estimate_allocated_bytes=estimate.total_bytes - estimate.overhead_bytes,
        measured_bytes=measured.peak_bytes,
        measured_reserved_bytes=measured.peak_reserved_bytes,
        available_bytes=free,
        steps=steps,
        seconds=round(time.perf_counter() - t0, 2),
    )


def cuda_context_bytes(device: str = "cuda") -> dict[str, int]:
    """The CUDA context's own memory, measured: device memory in use (``mem_get_info``) after
    ``torch.cuda.init()`` and a first tiny matmul (cuBLAS handle and workspace), minus what the caching
    allocator holds. This is the term ``budget.memory.CUDA_CONTEXT_BYTES`` stands for."""
    import torch

    dev = torch.device(device)
    free0, total = torch.cuda.mem_get_info(dev)
    torch.cuda.init()
    a = torch.randn(64, 64, device=dev, dtype=torch.bfloat16)
    (a @ a).sum().item()
    torch.cuda.synchronize(dev)
    free, total = torch.cuda.mem_get_info(dev)
    reserved = int(torch.cuda.memory_reserved(dev))
    in_use = int(total - free)
    del a
    return {
        "total_bytes": int(total),
        "in_use_bytes": in_use,
        "allocator_reserved_bytes": reserved,
        "context_bytes": in_use - reserved,
        "in_use_before_first_matmul_bytes": int(total - free0),
    }
