"""`--device` and `--quant` on train / eval / search: a missing GPU is one line (exit 2) before the model
loads; the run says where it ran; a 4-bit trial's adapter scores the same through `eval`."""

from __future__ import annotations

import json

import pytest

TRAIN = ["--targets", "qv", "--r", "4", "--max-steps", "3", "--batch-size", "8", "--lr", "1e-2", "--reference", "none"]


@pytest.fixture
def no_weights_load(monkeypatch):
    """Loading weights fails the test: a refusal must come before it."""
    import loratune.models.weights as weights

    def boom(*a, **k):
        raise AssertionError("the model was loaded before the device was checked")

    monkeypatch.setattr(weights, "load_model", boom)


@pytest.fixture
def gpus(monkeypatch):
    """Pretend this machine has ``n`` CUDA devices (0: none)."""
    import torch

    def _set(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return _set


@pytest.mark.parametrize("command", ["train", "eval", "search"])
@pytest.mark.usefixtures("no_weights_load")
def test_no_gpu_exits_2_before_loading(cli, tiny_model_dir, qa_file, tmp_path, gpus, command):
    gpus(0)
    extra = ["--out", str(tmp_path / "o")] if command != "eval" else []
    p = cli(command, str(tiny_model_dir), "--data", str(qa_file), "--device", "cuda", *extra)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines[0].startswith("error: --device cuda: CUDA is not available"), p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "o").exists()


def test_a_gpu_index_the_machine_lacks_is_refused(cli, tiny_model_dir, qa_file, tmp_path, gpus, no_weights_load):
    gpus(1)
    p = cli("train", str(tiny_model_dir), "--data", str(qa_file), "--device", "cuda:3", "--out", str(tmp_path / "o"))
    assert p.returncode == 2 and "this machine has 1 CUDA device(s) (only cuda:0)" in p.stderr, p.stderr


@pytest.mark.parametrize(
    ("flag", "value", "needle"), [("--device", "gpu", "unknown --device"), ("--quant", "2bit", "unknown --quant")]
)
def test_unknown_device_or_quant_is_one_line(cli, tiny_model_dir, qa_file, tmp_path, flag, value, needle):
    p = cli("train", str(tiny_model_dir), "--data", str(qa_file), flag, value, "--out", str(tmp_path / "o"))
    assert p.returncode == 2 and needle in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_train_on_auto_says_where_it_ran(cli, tiny_model_dir, qa_file, tmp_path, gpus):
    gpus(0)
    out = tmp_path / "a"
    p = cli("train", str(tiny_model_dir), "--data", str(qa_file), *TRAIN, "--dtype", "fp32", "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert "cpu, fp32" in p.stderr.splitlines()[0]  # the header line names the device it took
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["extra"]["device"] == "cpu" and metrics["extra"]["quant"] == "none"
    assert metrics["load"] == {"quant": "none"} and metrics["peak_memory_bytes"] > 0
    assert metrics["extra"]["speed_paths"]["fused_lora"] is True


def test_4bit_train_then_eval_reproduces_the_validation_loss(cli, tiny_model_dir, qa_file, tmp_path):
    import bitsandbytes  # noqa: F401  (a dependency: missing is a failure)

    out = tmp_path / "q"
    p = cli("train", str(tiny_model_dir), "--data", str(qa_file), *TRAIN, "--quant", "4bit", "--dtype", "bf16",
            "--device", "cpu", "--out", str(out), "--json")  # fmt: skip
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["status"] == "ok" and res["extra"]["quant"] == "4bit"
    assert json.loads((out / "metrics.json").read_text())["load"]["quantization_config"]["load_in_4bit"] is True
    # eval reads the load flags from metrics.json: the adapter is scored over a 4-bit base again.
    e = cli("eval", str(tiny_model_dir), "--adapter", str(out), "--data", str(qa_file), "--dtype", "bf16",
            "--device", "cpu", "--no-qa", "--json")  # fmt: skip
    assert e.returncode == 0, e.stderr
    scores = json.loads(e.stdout)
    assert scores["quant"] == "4bit" and scores["device"] == "cpu"
    assert scores["loss"] == pytest.approx(res["val_loss_after"], rel=2e-3)


def test_search_config_carries_device_and_quant():
    from loratune.errors import ConfigError
    from loratune.search.config import SearchConfig

    c = SearchConfig(model="smollm2-135m", device="CUDA:1", quant="4bit")
    assert c.device == "cuda:1" and SearchConfig.from_dict(c.to_dict()) == c
    assert SearchConfig.from_dict({"model": "x"}).device == "auto"  # an older search.json
    with pytest.raises(ConfigError, match="unknown --quant"):
        SearchConfig(model="x", quant="3bit")
