"""PeakMemory counts live tensor storage exactly; a real tiny training step lands on the estimate."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from loratune.anatomy.extract import anatomy_from_model
from loratune.anatomy.targets import TargetSpec
from loratune.budget import AdapterSpec
from loratune.budget.memory import MemorySettings, estimate_memory
from loratune.errors import ConfigError
from loratune.measure import PeakMemory, measure_training_peak

torch.set_num_threads(1)


def test_counts_allocations_frees_and_views_once() -> None:
    with PeakMemory("cpu") as pm:
        a = torch.empty(1000)  # 4,000 B
        v = a[10:]  # a view: same storage, not counted again
        b = torch.ones(500, dtype=torch.float64)  # 4,000 B
        assert pm.current_bytes == 8000
        del a, v  # the storage dies with its last view
        assert pm.current_bytes == 4000
        b.mul_(2)  # in place: same storage, nothing new to count
        assert pm.current_bytes == 4000
    assert pm.peak_bytes == 8000


def test_tracked_tensors_count_from_the_start_and_reset_peak() -> None:
    w = torch.zeros(256, 4)  # 4,096 B resident before the context
    with PeakMemory("cpu", track=[w]) as pm:
        assert pm.current_bytes == 4096
        x = w.sum(0) + 1  # two small results; the first is freed at once
        del x
        pm.reset_peak()
        y = torch.empty(100)
        assert pm.live_peak_bytes == 4096 + 400
        del y
    assert pm.peak_bytes == 4096 + 400


def test_module_parameters_and_grads_are_tracked() -> None:
    lin = torch.nn.Linear(16, 8)  # 128 + 8 floats
    lin(torch.ones(2, 16)).sum().backward()
    with PeakMemory("cpu", track=[lin]) as pm:
        pass
    assert pm.peak_bytes == 2 * (128 + 8) * 4  # weights + their grads


def test_after_the_context_frees_are_ignored() -> None:
    with PeakMemory("cpu") as pm:
        t = torch.empty(10)
    del t  # must not touch the closed counter
    assert pm.peak_bytes == 40


def test_rss_mode_catches_a_transient_peak() -> None:
    import mmap
    import time

    from loratune.trial.peak_memory import _rss_bytes

    size = 200 * 2**20
    with PeakMemory("cpu", mode="rss") as pm:
        # An anonymous mapping, not an allocator's block: touched pages are resident, and unmapping
        # returns them to the OS whatever malloc/torch would have cached.
        block = mmap.mmap(-1, size)
        for offset in range(0, size, mmap.PAGESIZE):
            block[offset] = 1
        time.sleep(0.05)  # the sampler polls every 2 ms
        alive = _rss_bytes()
        block.close()
        after = _rss_bytes()
    assert alive - after >= 150_000_000  # the block really came and went
    assert pm.peak_bytes >= alive - 20_000_000  # the peak is the transient one, not the end value


@pytest.mark.parametrize(("device", "mode"), [("tpu", "tensors"), ("cpu", "guess")])
def test_bad_arguments(device: str, mode: str) -> None:
    with pytest.raises(ConfigError) as ei:
        PeakMemory(device, mode=mode)
    assert ei.value.hint


def _tiny_llama(tiny_config) -> torch.nn.Module:
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_config("llama", vocab_size=1000, tie_word_embeddings=True))


@pytest.mark.parametrize(
    ("targets", "method", "dtype", "gc", "autocast"),
    [
        (("attention",), "lora", "fp32", False, False),
        ("all-linear", "dora", "fp32", False, False),
        ("all-linear", "lora", "bf16", False, False),
        ("all-linear", "dora", "bf16", False, True),
        (("attention",), "lora", "fp32", True, False),
    ],
)
def test_tiny_llama_step_matches_the_estimate(
    tiny_config: Any, targets: tuple[str, ...] | str, method: str, dtype: str, gc: bool, autocast: bool
) -> None:
    model = _tiny_llama(tiny_config).to(torch.bfloat16 if dtype == "bf16" else torch.float32)
    anatomy = anatomy_from_model(model, source="tiny")
    spec = AdapterSpec(targets=TargetSpec(target_modules=targets), r=8, method=method)
    settings = MemorySettings(
        batch_size=2, seq_len=32, dtype=dtype, device="cpu", grad_checkpointing=gc, autocast=autocast
    )
    measured = measure_training_peak(model, spec, settings, steps=2)
    est = estimate_memory(anatomy, spec, settings)
    # Resident before the first step: the base weights and the fp32 adapter as estimated, plus RoPE's
    # inv_freq buffers (2 × 8 values in the model dtype: 32 or 64 B), which are not parameters.
    assert measured.weights_bytes - (est.weights_bytes + est.trainable_bytes) in (32, 64)
    # The logits (V = 1000 ≫ h = 64) dominate; every term together lands within 5 %.
    assert abs(est.total_bytes - measured.peak_bytes) / measured.peak_bytes < 0.05


def test_cuda_unavailable_is_a_config_error(tiny_config: Any) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    spec = AdapterSpec(targets=TargetSpec(target_modules=("attention",)))
    with pytest.raises(ConfigError, match="CUDA is not available"):
        measure_training_peak(_tiny_llama(tiny_config), spec, MemorySettings(device="cuda"))
