"""The compute dtype of a trial's frozen base, decided without importing torch on the CPU.

Kept apart from ``speed.py`` (which needs torch at import) so the CLI can validate ``--dtype`` and
build a trial's settings before it pays for loading torch and transformers.
"""

from __future__ import annotations

from loratune.errors import ConfigError

COMPUTE_DTYPE_CHOICES = ("auto", "bf16", "fp16", "fp32")  # fp16: CUDA only (loss scaler)


def cpu_has_fast_bf16() -> bool:
    """bf16 matmuls run natively (AVX512-BF16 / AMX) rather than emulated through fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def check_compute_dtype(requested: str) -> str:
    """``requested`` when it names a compute dtype (no device needed, no torch), else a ConfigError."""
    if requested not in COMPUTE_DTYPE_CHOICES:
        raise ConfigError(f"unknown compute dtype {requested!r}", "use auto, bf16, fp16 (CUDA) or fp32")
    return requested


def resolve_compute_dtype(requested: str, device: str) -> str:
    """``auto`` → bf16 where the hardware runs it natively, else fp32.

    bf16 is the default only for the frozen base: LoRA weights, their gradients and the Adam state
    stay fp32 (PEFT's ``autocast_adapter_dtype``), and the loss is taken in fp32. The benchmark
    (bench/trial_throughput.py) checks the final loss stays within 2 % of an fp32 run.
    """
    check_compute_dtype(requested)
    # The per-device rule (CUDA: bf16, else fp16 with a loss scaler, else fp32) lives in trial/device.py.
    from loratune.trial.device import choose_dtype

    return choose_dtype(requested, device)
