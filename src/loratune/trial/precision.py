"""The compute dtype of a trial's frozen base, decided without importing torch on the CPU.

Kept apart from ``speed.py`` (which needs torch at import) so the CLI can validate ``--dtype`` and
build a trial's settings before it pays for loading torch and transformers.
"""

from __future__ import annotations

from loratune.errors import ConfigError

COMPUTE_DTYPE_CHOICES = ("auto", "bf16", "fp32")


def cpu_has_fast_bf16() -> bool:
    """bf16 matmuls run natively (AVX512-BF16 / AMX) rather than emulated through fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_compute_dtype(requested: str, device: str) -> str:
    """``auto`` → bf16 where the hardware runs it natively, else fp32.

    bf16 is the default only for the frozen base: LoRA weights, their gradients and the Adam state
    stay fp32 (PEFT's ``autocast_adapter_dtype``), and the loss is taken in fp32. The benchmark
    (bench/trial_throughput.py) checks the final loss stays within 2 % of an fp32 run.
    """
    if requested not in COMPUTE_DTYPE_CHOICES:
        raise ConfigError(f"unknown compute dtype {requested!r}", "use auto, bf16 or fp32")
    if requested != "auto":
        return requested
    if device.startswith("cuda"):
        import torch

        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_fast_bf16() else "fp32"
