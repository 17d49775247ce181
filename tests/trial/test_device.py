"""Device resolution, dtype choice and speed paths per device: pure functions over a stand-in ``torch.cuda``."""

from __future__ import annotations

import pytest

from loratune.errors import ConfigError
from loratune.trial.device import (
    SPEED_PATHS,
    check_device_syntax,
    choose_dtype,
    describe,
    make_grad_scaler,
    resolve_device,
    speed_paths,
)


class FakeCuda:
    """What the device code reads from ``torch.cuda``."""

    def __init__(self, available=True, count=1, bf16=True, capability=(9, 0), name="NVIDIA H200"):
        self.available, self.count, self.bf16, self.capability, self.name = available, count, bf16, capability, name

    def is_available(self):
        return self.available

    def device_count(self):
        return self.count if self.available else 0

    def is_bf16_supported(self):
        return self.bf16

    def get_device_capability(self, index=0):
        return self.capability

    def get_device_name(self, index=0):
        return self.name


NO_GPU = FakeCuda(available=False, count=0)


def test_auto_takes_cuda_when_available_else_the_cpu():
    assert resolve_device("auto", FakeCuda()) == "cuda"
    assert resolve_device("auto", NO_GPU) == "cpu"
    assert resolve_device("cpu", FakeCuda()) == "cpu"


def test_cuda_and_cuda_n_are_checked_against_the_machine():
    assert resolve_device("cuda", FakeCuda()) == "cuda"
    assert resolve_device("CUDA:1", FakeCuda(count=2)) == "cuda:1"
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda", NO_GPU)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda:3", NO_GPU)
    with pytest.raises(ConfigError, match=r"cuda:3: this machine has 2 CUDA device\(s\) \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:3", FakeCuda(count=2))
    with pytest.raises(ConfigError, match=r"only cuda:0"):
        resolve_device("cuda:1", FakeCuda(count=1))


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "mps", "cuda:-1", ""])
def test_unknown_devices_are_one_config_error(bad):
    with pytest.raises(ConfigError, match="unknown --device"):
        check_device_syntax(bad)


def test_the_real_machine_resolves_without_error():
    import torch

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_cuda_dtype_is_bf16_then_fp16_then_fp32():
    assert choose_dtype("auto", "cuda", FakeCuda(bf16=True)) == "bf16"
    assert choose_dtype("auto", "cuda:0", FakeCuda(bf16=False, capability=(7, 5))) == "fp16"  # T4
    assert choose_dtype("auto", "cuda", FakeCuda(bf16=False, capability=(6, 1))) == "fp32"  # Pascal
    assert choose_dtype("fp32", "cuda", FakeCuda()) == "fp32"
    assert choose_dtype("fp16", "cuda", FakeCuda()) == "fp16"
    with pytest.raises(ConfigError, match="does not support bf16"):
        choose_dtype("bf16", "cuda", FakeCuda(bf16=False))


def test_cpu_dtype_follows_native_bf16_and_refuses_fp16():
    assert choose_dtype("auto", "cpu", cpu_bf16=True) == "bf16"
    assert choose_dtype("auto", "cpu", cpu_bf16=False) == "fp32"
    assert choose_dtype("bf16", "cpu", cpu_bf16=False) == "bf16"
    with pytest.raises(ConfigError, match="fp16 is for CUDA"):
        choose_dtype("fp16", "cpu")
    with pytest.raises(ConfigError, match="unknown compute dtype"):
        choose_dtype("fp8", "cpu")


def test_the_precision_module_delegates_to_the_device_rule(monkeypatch):
    import torch

    from loratune.trial.precision import resolve_compute_dtype

    fake = FakeCuda(bf16=False, capability=(7, 0))
    monkeypatch.setattr(torch.cuda, "is_available", fake.is_available)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", fake.is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "get_device_capability", fake.get_device_capability)
    assert resolve_compute_dtype("auto", "cuda") == "fp16"
    assert resolve_device("auto") == "cuda"


def test_only_fp16_gets_a_loss_scaler():
    assert make_grad_scaler("bf16", "cuda") is None and make_grad_scaler("fp32", "cpu") is None
    scaler = make_grad_scaler("fp16", "cpu")  # the CPU scaler: same API, testable here
    assert scaler is not None and hasattr(scaler, "scale")


def test_cuda_switches_off_the_cpu_measured_speed_paths_only():
    cuda, cpu = speed_paths("cuda:1"), speed_paths("cpu")
    assert cuda is SPEED_PATHS["cuda"] and cpu is SPEED_PATHS["cpu"]
    assert not (cuda.fused_lora or cuda.fused_norm or cuda.packed_dropout or cuda.thread_tuning)
    assert cuda.length_grouping and cuda.label_logits
    assert all(cpu.to_dict().values())


def test_describe_names_the_gpu():
    assert describe("cuda:0", "bf16", "4bit", FakeCuda()) == "cuda:0 (NVIDIA H200), bf16, 4bit base"
    assert describe("cpu", "fp32") == "cpu, fp32"


def test_an_fp16_base_trains_through_the_loss_scaler(tiny_tokenizer, qa_examples, tiny_llama):
    """The CUDA fp16 path (GPUs without bf16), run on the CPU: fp16 base, fp32 LoRA, GradScaler steps."""
    import torch

    from loratune.anatomy.extract import anatomy_from_model
    from loratune.anatomy.targets import TargetSpec
    from loratune.budget import AdapterSpec
    from loratune.trial import TrainSettings
    from loratune.trial.loop import run_trial

    base = tiny_llama().to(torch.float16)
    for p in base.parameters():
        p.requires_grad_(False)
    settings = TrainSettings(learning_rate=1e-2, batch_size=8, max_steps=10, warmup_ratio=0.0, compute_dtype="fp16")
    spec = AdapterSpec(TargetSpec(("all",)), r=8, alpha=16, dropout=0.0)
    res = run_trial(
        base, tiny_tokenizer, anatomy_from_model(base, source="tiny"), spec, settings,
        qa_examples(32, seed=1), qa_examples(8, seed=2), progress=False,
    )  # fmt: skip
    assert res.status == "ok", res.message
    assert res.val_loss_after < 0.9 * res.val_loss_before
    assert res.extra["compute_dtype"] == "fp16"
