"""Where a trial runs and in which precision: pure decisions over what ``torch.cuda`` reports.

Nothing here imports torch at module import (the CLI checks ``--device`` before it pays for torch and
transformers); each function takes the ``torch.cuda`` module as an argument (default: the real one),
so the tests decide what the machine has by passing a stand-in.

- :func:`resolve_device`: ``auto`` → ``cuda`` when ``torch.cuda.is_available()``, else ``cpu``;
  ``cuda`` / ``cuda:N`` are checked against the machine (one :class:`ConfigError`, exit 2, before any
  model loads).
- :func:`choose_dtype`: the frozen base's compute dtype per device. CUDA: bf16 where
  ``torch.cuda.is_bf16_supported()``, else fp16 (trained with a loss scaler, :func:`make_grad_scaler`)
  on GPUs with fp16 tensor cores (compute capability 7.0+), else fp32. CPU: bf16 where the CPU runs it
  natively (AVX512-BF16 / AMX), else fp32.
- :func:`speed_paths`: which of loratune's own speed paths a device gets (see ``SPEED_PATHS``).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import asdict, dataclass
from typing import Any

from loratune.errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")
DEVICE_HELP = "auto (CUDA when available, else the CPU), cpu, cuda or cuda:N."
QUANT_CHOICES = ("none", "8bit", "4bit")
QUANT_HELP = "Base quantization through bitsandbytes: none, 8bit (LLM.int8) or 4bit (NF4, QLoRA)."
_CUDA = re.compile(r"^cuda(?::(\d+))?$")
# fp16 tensor cores arrive with Volta (sm_70); below it fp16 matmuls are no faster than fp32.
FP16_MIN_CAPABILITY = (7, 0)


def _torch_cuda() -> Any:
    import torch

    return torch.cuda


def check_device_syntax(requested: str) -> str:
    """``requested`` normalised (``CUDA:1`` → ``cuda:1``), or a ConfigError; no torch needed."""
    text = str(requested).strip().lower()
    if text in ("auto", "cpu") or _CUDA.match(text):
        return text
    raise ConfigError(f"unknown --device {requested!r}", "use auto, cpu, cuda or cuda:N (e.g. cuda:0)")


def resolve_device(requested: str = "auto", cuda: Any = None) -> str:
    """The device a run takes: ``cpu``, ``cuda`` or ``cuda:N``; a device this machine lacks is refused."""
    text = check_device_syntax(requested)
    if text == "cpu":
        return "cpu"
    cuda = cuda if cuda is not None else _torch_cuda()
    available = bool(cuda.is_available())
    if text == "auto":
        return "cuda" if available else "cpu"
    if not available:
        raise ConfigError(
            f"--device {text}: CUDA is not available on this machine (no GPU, or a CPU-only torch build)",
            "use --device cpu, or --device auto to take a GPU only where there is one",
        )
    m = _CUDA.match(text)
    assert m is not None
    if m.group(1) is not None:
        index, count = int(m.group(1)), int(cuda.device_count())
        if index >= count:
            have = f"cuda:0 to cuda:{count - 1}" if count > 1 else "only cuda:0" if count == 1 else "none"
            raise ConfigError(
                f"--device {text}: this machine has {count} CUDA device(s) ({have})", "pick one it has, or cuda"
            )
    return text


def is_cuda(device: str) -> bool:
    return device.startswith("cuda")


def choose_dtype(requested: str, device: str, cuda: Any = None, *, cpu_bf16: bool | None = None) -> str:
    """The compute dtype of the frozen base for ``requested`` (auto, bf16, fp16, fp32) on ``device``.

    ``cpu_bf16`` overrides the CPU check (tests); ``cuda`` the ``torch.cuda`` module (tests).
    """
    if requested not in ("auto", "bf16", "fp16", "fp32"):
        raise ConfigError(f"unknown compute dtype {requested!r}", "use auto, bf16, fp16 (CUDA) or fp32")
    if not is_cuda(device):
        if requested == "fp16":
            raise ConfigError("--dtype fp16 is for CUDA (with a loss scaler)", "use bf16 or fp32 on the CPU")
        if requested != "auto":
            return requested
        if cpu_bf16 is None:
            from loratune.trial.precision import cpu_has_fast_bf16

            cpu_bf16 = cpu_has_fast_bf16()
        return "bf16" if cpu_bf16 else "fp32"
    cuda = cuda if cuda is not None else _torch_cuda()
    index = _index(device)
    bf16 = bool(cuda.is_bf16_supported())
    if requested == "bf16" and not bf16:
        raise ConfigError(f"--dtype bf16: {device} does not support bf16", "use --dtype auto (fp16 or fp32)")
    if requested != "auto":
        return requested
    if bf16:
        return "bf16"
    capability = tuple(cuda.get_device_capability(index))
    return "fp16" if capability >= FP16_MIN_CAPABILITY else "fp32"


def _index(device: str) -> int:
    m = _CUDA.match(device)
    return int(m.group(1)) if m and m.group(1) is not None else 0


def make_grad_scaler(compute_dtype: str, device: str) -> Any:
    """A ``torch.amp.GradScaler`` for fp16 training (bf16 and fp32 need none: None)."""
    if compute_dtype != "fp16":
        return None
    import torch

    return torch.amp.GradScaler("cuda" if is_cuda(device) else "cpu")


@dataclass(frozen=True)
class SpeedPaths:
    """Which of loratune's speed paths a trial takes on its device (True: on)."""

    fused_lora: bool  # trial/fused_lora.py: one autograd node per LoRA linear (CPU-measured)
    fused_norm: bool  # trial/fused_norm.py: one-kernel RMSNorm (CPU-measured)
    packed_dropout: bool  # trial/dropout.py: bool mask dropout (CPU-measured)
    thread_tuning: bool  # trial/speed.py: measured intra-op thread count (CPU only by nature)
    length_grouping: bool  # trial/batching.py: batches of similar length (device-neutral: less padding)
    label_logits: bool  # trial/loss.py: logits at label positions only (device-neutral: less work)

    def to_dict(self) -> dict[str, bool]:
        return asdict(self)


# On CUDA the three CPU-measured paths are off (PEFT's own LoRA forward, transformers' RMSNorm, nn.Dropout)
# until a GPU measurement decides; the device-neutral two stay on (they remove work, whatever runs it).
SPEED_PATHS = {
    "cpu": SpeedPaths(True, True, True, True, True, True),
    "cuda": SpeedPaths(False, False, False, False, True, True),
}


def speed_paths(device: str) -> SpeedPaths:
    return SPEED_PATHS["cuda" if is_cuda(device) else "cpu"]


def describe(device: str, compute_dtype: str, quant: str = "none", cuda: Any = None) -> str:
    """``cuda:0 (NVIDIA H200), bf16, 4bit base`` — for a run's header line."""
    where = device
    if is_cuda(device):
        cuda = cuda if cuda is not None else _torch_cuda()
        # A stand-in or a driver that cannot name it: the device string is enough.
        with contextlib.suppress(Exception):
            where = f"{device} ({cuda.get_device_name(_index(device))})"
    return f"{where}, {compute_dtype}" + (f", {quant} base" if quant != "none" else "")
