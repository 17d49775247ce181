"""`loratune budget MODEL --measure`: the shape built with random weights from its config alone, two real
training steps measured beside the estimate; a shape that cannot fit is refused before anything is built."""

from __future__ import annotations

import json
import sys

import pytest

from loratune.errors import ConfigError


@pytest.fixture(scope="module")
def config_only_dir(tiny_config, tmp_path_factory):
    """A model directory holding only config.json: no weights, no tokenizer."""
    d = tmp_path_factory.mktemp("config-only")
    tiny_config("llama", vocab_size=256, architectures=["LlamaForCausalLM"]).save_pretrained(d)
    return d


@pytest.fixture
def budget(capsys, monkeypatch):
    from loratune.cli import app as cli

    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("LORATUNE_THREADS", "1")

    def _run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["loratune", "budget", *args])
        code = 0
        try:
            cli.main()
        except SystemExit as e:
            code = int(e.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run


SHAPE = ["--batch-size", "2", "--seq-len", "32", "--device", "cpu"]


@pytest.mark.parametrize(
    "extra", [["--dtype", "fp32"], ["--dtype", "bf16"], ["--dtype", "fp32", "--grad-checkpointing"]]
)
def test_measure_on_the_cpu_lands_on_the_estimate(budget, config_only_dir, extra):
    code, out, err = budget(str(config_only_dir), *SHAPE, *extra, "--measure", "--json")
    assert code == 0, err
    m = json.loads(out)["measured"]
    assert m["device"] == "cpu" and m["weights"] == "random" and m["steps"] == 2
    assert m["estimate_allocated_bytes"] == m["estimate_bytes"]  # no CUDA overhead term on the CPU
    # Dense bases: the estimate and the live-tensor count agree to a few percent (0.0 % / 0.0 % / +3 % here).
    assert abs(m["rel_error"]) < 0.05, m
    assert m["available_bytes"] > m["measured_bytes"] > 0


def test_measure_prints_beside_the_estimate(budget, config_only_dir):
    code, out, err = budget(str(config_only_dir), *SHAPE, "--dtype", "fp32", "--measure")
    assert code == 0, err
    assert "measured on cpu: peak" in out and "2 real training steps" in out and "random weights" in out


def test_measure_a_4bit_base_on_the_cpu(budget, config_only_dir):
    import bitsandbytes  # noqa: F401  (a dependency: missing is a failure)

    code, out, err = budget(str(config_only_dir), *SHAPE, "--dtype", "bf16", "--quant", "4bit", "--measure", "--json")
    assert code == 0, err
    m = json.loads(out)["measured"]
    # A k-bit base's activations are fp32 without autocast (prepare_model_for_kbit_training): the estimate
    # models that and lands within 1 % here (it was -14 % with 16-bit activations); real-scale 4-bit rows are
    # in the CUDA check (bench/gpu_check.sh).
    assert m["measured_bytes"] > 0 and abs(m["rel_error"]) < 0.05, m


def test_a_shape_that_cannot_fit_is_refused_in_one_line_before_anything_is_built(budget, monkeypatch):
    import loratune.measure.preflight as pf

    def never(*a, **k):
        raise AssertionError("the model was built")

    monkeypatch.setattr(pf, "random_model", never)
    # llama-3.1-8b at 64 × 8192 in fp32: far beyond any CPU's RAM.
    code, out, err = budget("llama-3.1-8b", "--batch-size", "64", "--seq-len", "8192", "--dtype", "fp32",
                            "--device", "cpu", "--measure")  # fmt: skip
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[0].startswith("error: --measure: the estimate") and "available RAM" in lines[0], err


def test_cuda_measure_without_a_gpu_is_refused(budget, config_only_dir, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = budget(str(config_only_dir), "--device", "cuda", "--measure")
    assert code == 2 and "CUDA is not available" in err


def test_check_fits_and_available_bytes():
    from loratune.budget.memory import MemoryEstimate
    from loratune.measure.preflight import available_bytes, check_fits

    assert available_bytes("cpu") > 0
    est = MemoryEstimate.__new__(MemoryEstimate)
    object.__setattr__(est, "total_bytes", 10)
    check_fits(est, "cpu", 10)
    with pytest.raises(ConfigError, match="free GPU memory"):
        check_fits(est, "cuda:0", 9)
