"""The GPU check's code path (bench/gpu_check.sh → the two CUDA benches) in its dry run: the CPU, tiny
shapes, results under a temporary folder. Keeps the script that a GPU session will run working in CI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def bench_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.setenv("LORATUNE_THREADS", "1")
    monkeypatch.delenv("LORATUNE_GPU_DRY_RUN", raising=False)


def test_memory_accuracy_cuda_dry_run(bench_path, tmp_path):
    import memory_accuracy_cuda

    out = tmp_path / "mem.json"
    memory_accuracy_cuda.main(["--device", "cuda", "--dry-run", "--quick", "--out", str(out)])
    data = json.loads(out.read_text())
    assert data["dry_run"] is True and data["device"] == "cpu" and data["cuda_context"]["measured"] is False
    assert "random weights" in data["weights"]
    rows = data["rows"]
    assert len(rows) + len(data["skipped"]) == len(memory_accuracy_cuda.ROWS[::3])
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:  # without it only the quantized rows may fail (recorded, not raised)
        assert all(s["quant"] != "none" for s in data["skipped"]), data["skipped"]
    else:
        assert not data["skipped"], data["skipped"]
    assert all({"estimate_bytes", "measured_bytes", "rel_error"} <= set(r) for r in rows)
    assert len(memory_accuracy_cuda.ROWS) >= 12
    assert {r.quant for r in memory_accuracy_cuda.ROWS} == {"none", "4bit", "8bit"}
    assert any(r.grad_checkpointing for r in memory_accuracy_cuda.ROWS)
    assert max(r.batch_size * r.seq_len for r in memory_accuracy_cuda.ROWS) == 8 * 2048


def test_trial_throughput_cuda_dry_run(bench_path, tmp_path):
    import trial_throughput_cuda

    out = tmp_path / "tp.json"
    trial_throughput_cuda.main(["--device", "cuda", "--dry-run", "--only", "smollm2-135m", "--out", str(out)])
    data = json.loads(out.read_text())
    assert data["dry_run"] is True and not data["skipped"], data["skipped"]
    m = data["models"]["smollm2-135m"]
    assert {"speedup", "loss_rel_gap", "mfu"} <= set(m) and set(m["arms"]) == {"loratune", "trainer"}
    assert m["arms"]["loratune"]["speed_paths"]["fused_lora"] is True  # the CPU keeps its paths in a dry run


def test_out_path_keeps_dry_runs_out_of_results(bench_path):
    import gpu_common

    assert gpu_common.out_path("memory_accuracy_cuda.json", True).parent.name == "work"
    assert gpu_common.out_path("memory_accuracy_cuda.json", False).parent.name == "results"
