"""Settings that decide how fast a trial runs on this machine: threads and the compute dtype."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from loratune.errors import ConfigError
from loratune.trial.precision import cpu_has_fast_bf16 as cpu_has_fast_bf16  # re-exported
from loratune.trial.precision import resolve_compute_dtype as resolve_compute_dtype  # re-exported


def usable_cpus() -> int:
    """CPUs this process may run on (a container's cgroup/affinity, not the host's core count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no sched_getaffinity
        return os.cpu_count() or 1


def set_threads(n: int | None = None) -> int:
    """Intra-op threads for this process: ``n`` (the caller's setting, e.g. ``search --threads``), else
    the user's ``LORATUNE_THREADS``, else :func:`best_threads`."""
    env = os.environ.get("LORATUNE_THREADS")
    if n is None and env:
        try:
            n = int(env)
        except ValueError:
            raise ConfigError(f"LORATUNE_THREADS={env!r} is not an integer", "set it to e.g. 4, or unset it") from None
    n = n or best_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def thread_options(cpus: int) -> tuple[int, ...]:
    """Thread counts worth trying: all usable CPUs, half of them, one (most first)."""
    return tuple(sorted({cpus, max(1, cpus // 2), 1}, reverse=True))


def best_threads(candidates: tuple[int, ...] | None = None) -> int:
    """The thread count that runs a small training-like workload fastest right now (~0.2 s to find).

    Why measure instead of using every CPU: a training step is thousands of short parallel regions,
    and each waits at a barrier for its slowest thread. When other processes hold some of the CPUs,
    a descheduled thread stalls every region for a whole scheduler time slice: measured here with
    2 threads on 2 busy CPUs, one SmolLM2 step took 10–40 s against 2.5 s with 1 thread (1.2 s with 2
    threads on an idle machine). Fewer threads than CPUs is then faster; on an idle machine all win.
    """
    options = candidates or thread_options(usable_cpus())
    if len(options) == 1:
        return options[0]
    before = torch.get_num_threads()
    x = torch.randn(256, 576, dtype=torch.bfloat16)
    w = torch.randn(576, 576, dtype=torch.bfloat16)
    best, best_t = options[0], float("inf")
    try:
        for n in options:
            torch.set_num_threads(n)
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                y = x
                for _ in range(20):  # many short ops, like a transformer block's forward
                    y = torch.nn.functional.silu(y @ w) * 0.5
                times.append(time.perf_counter() - t0)
            t = min(times)
            if t < best_t * 0.9:  # prefer more threads unless fewer is clearly faster
                best, best_t = n, min(best_t, t)
            best_t = min(best_t, t)
    finally:
        torch.set_num_threads(before)
    return best


def torch_dtype(name: str) -> torch.dtype:
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


# Measured on SmolLM2-135M (bf16, 1 thread, CPU time per training step of 560 tokens): eager attention
# 1.28 s vs SDPA 1.84 s at 70 tokens per row, 1.39 vs 1.70 s at 280. Eager keeps the [b, heads, s, s]
# probabilities for backward (s² memory), so beyond this length SDPA's O(s) memory wins.
EAGER_MAX_TOKENS = 256


def choose_attention(longest: int, device: str) -> str | None:
    """Attention kernel for a trial whose longest row has ``longest`` tokens (None: keep the model's)."""
    if device.startswith("cuda"):
        return "sdpa"  # PyTorch's fused kernels (flash / memory-efficient) on a GPU, whatever the length
    return "eager" if longest <= EAGER_MAX_TOKENS else "sdpa"


def attention_for(rows: Iterable[Any], max_length: int, device: str) -> str | None:
    """The kernel for a run over ``rows`` (tokenized examples), decided by the longest one cut to
    ``max_length``: ``train`` passes its train + validation + reference rows, ``eval`` the same
    file's train + validation rows, so both pick the same kernel and report the same loss."""
    longest = min(max_length, max((len(ex.input_ids) for ex in rows), default=1))
    return choose_attention(longest, device)


@contextlib.contextmanager
def use_attention(model: Any, name: str | None) -> Iterator[None]:
    """Switch the attention implementation for the duration (if the model supports ``name``)."""
    previous = getattr(model.config, "_attn_implementation", None)
    switched = False
    if name is not None and previous != name and hasattr(model, "set_attn_implementation"):
        try:
            model.set_attn_implementation(name)
            switched = True
        except (ValueError, ImportError):
            pass
    try:
        yield
    finally:
        if switched:
            model.set_attn_implementation(previous)


def autocast(compute_dtype: str, device: str) -> Any:
    """bf16 autocast for forward passes over a bf16 base: the fp32 LoRA weights are cast to bf16 per
    matmul (a few KB) instead of every activation being cast to fp32 and back around each adapter
    (PEFT's input casting, switched off for the trial) — 10 % less CPU time per step, measured.
    Gradients and AdamW still update the fp32 LoRA weights; the loss is taken in fp32."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    dtype = torch.float16 if compute_dtype == "fp16" else torch.bfloat16  # fp16: CUDA, with a GradScaler
    return torch.autocast(device_type=kind, dtype=dtype, enabled=compute_dtype in ("bf16", "fp16"))


def model_compute_dtype(model: Any) -> str:
    """``bf16`` / ``fp16`` when the (frozen) weights are, else ``fp32``."""
    p = next(model.parameters(), None)
    if p is not None and p.dtype == torch.float16:
        return "fp16"
    return "bf16" if p is not None and p.dtype == torch.bfloat16 else "fp32"


class ThreadTuner:
    """Re-checks the thread count while training, because other processes come and go.

    Every ``every`` steps it runs ``probe`` steps with each candidate count (the current one first)
    and keeps the one with the most tokens per second. On an idle machine this costs ``probe`` slower
    steps per ``every`` (~4 %); when another process takes a CPU it avoids the 4–10× collapse that
    :func:`best_threads` describes. Disabled when the thread count is fixed (``LORATUNE_THREADS``).
    """

    def __init__(self, options: tuple[int, ...], *, start: int = 2, probe: int = 2, every: int = 25) -> None:
        self.options, self.probe, self.every = options, probe, every
        self.step = 0
        self.next_probe = start
        self.plan: list[int] = []
        self.samples: dict[int, list[float]] = {}
        self.trace: list[tuple[int, int]] = [(0, torch.get_num_threads())]

    @classmethod
    def for_this_machine(cls, *, fixed: bool = False) -> ThreadTuner | None:
        """None when the count is fixed (by the caller or ``LORATUNE_THREADS``) or there is one CPU."""
        cpus = usable_cpus()
        if fixed or os.environ.get("LORATUNE_THREADS") or cpus == 1:
            return None
        return cls(thread_options(cpus))

    def before_step(self) -> None:
        if not self.plan and self.step >= self.next_probe:
            current = torch.get_num_threads()
            order = [current] + [o for o in self.options if o != current]
            self.plan = [o for o in order for _ in range(self.probe)]
            self.samples = {o: [0.0, 0.0] for o in order}
        if self.plan and torch.get_num_threads() != self.plan[0]:
            torch.set_num_threads(self.plan[0])

    def after_step(self, tokens: int, seconds: float) -> None:
        self.step += 1
        if not self.plan:
            return
        sample = self.samples[self.plan.pop(0)]
        sample[0] += tokens
        sample[1] += seconds
        if not self.plan:
            best = max(self.samples, key=lambda o: self.samples[o][0] / max(self.samples[o][1], 1e-9))
            torch.set_num_threads(best)
            self.next_probe = self.step + self.every
            if best != self.trace[-1][1]:
                self.trace.append((self.step, best))
