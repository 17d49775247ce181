"""`loratune train` and `loratune eval` as a user runs them, on a tiny Llama with SmolLM2's tokenizer."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run(capsys, monkeypatch):
    """Run ``loratune ARGS`` in this process through the app's own main() (so exit codes are real)."""
    from loratune.cli import app as cli
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("LORATUNE_THREADS", "1")

    def _run(*args: str) -> Result:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["loratune", *args])
        code = 0
        try:
            cli.main()
        except SystemExit as e:
            code = int(e.code or 0)
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return _run


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from loratune.models import resolve_source
    from loratune.models.weights import weights_dir

    tok = AutoTokenizer.from_pretrained(str(weights_dir(resolve_source("smollm2-135m"))))
    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(tok),
        tie_word_embeddings=True,
    )
    d = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def qa_file(tmp_path_factory) -> Path:
    rows = [{"prompt": f"What is {i} plus {i}?", "response": f"It is {2 * i}."} for i in range(40)]
    p = tmp_path_factory.mktemp("data") / "qa.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def test_train_json_then_eval_with_the_adapter(run, tiny_model_dir, qa_file, tmp_path):
    out = tmp_path / "adapter"
    p = run(
        "train", str(tiny_model_dir), "--data", str(qa_file), "--targets", "all", "--r", "4",
        "--max-steps", "4", "--batch-size", "8", "--lr", "1e-2", "--reference", "none",
        "--dtype", "fp32", "--out", str(out), "--json",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["status"] == "ok" and res["steps"] == 4 and len(res["loss_curve"]) == 4
    # 2 layers × r=4 × (q 32+32, k 32+16, v 32+16, o 32+32, gate 32+64, up 32+64, down 64+32)
    assert res["trainable_params"] == 2 * 4 * (64 + 48 + 48 + 64 + 96 + 96 + 96)
    assert res["val_loss_after"] < res["val_loss_before"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val_loss_after"] == res["val_loss_after"] and metrics["settings"]["max_steps"] == 4
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4

    e = run(
        "eval",
        str(tiny_model_dir),
        "--adapter",
        str(out),
        "--data",
        str(qa_file),
        "--dtype",
        "fp32",
        "--qa-limit",
        "2",
        "--json",
    )
    assert e.returncode == 0, e.stderr
    scores = json.loads(e.stdout)
    # Same 10 % validation split (seed 0) and the same adapter: the same loss as train measured.
    assert scores["loss"] == pytest.approx(res["val_loss_after"], rel=1e-5)
    assert scores["qa_examples"] == 2 and 0.0 <= scores["token_f1"] <= 1.0


def test_train_takes_recommend_json_and_flags_override_it(run, tiny_model_dir, qa_file, tmp_path):
    cfg = tmp_path / "rec.json"
    cfg.write_text(
        json.dumps(
            {
                "config": {
                    "r": 2,
                    "lora_alpha": 4,
                    "target_modules": ["q_proj", "v_proj"],
                    "use_dora": True,
                    "layers_to_transform": [1],
                    "task_type": "CAUSAL_LM",
                },
                "training": {"learning_rate": 1e-3, "batch_size": 4, "steps": 2},
            }
        )  # fmt: skip
    )
    p = run("train", str(tiny_model_dir), "--data", str(qa_file), "--config", str(cfg), "--max-steps", "3",
            "--reference", "none", "--dtype", "fp32", "--out", str(tmp_path / "a"), "--json")  # fmt: skip
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["steps"] == 3  # the flag beats the file's "steps": 2
    # DoRA, layer 1 only: q r·(32+32) + 32 magnitudes, v r·(32+16) + 16
    assert res["trainable_params"] == 2 * 64 + 32 + 2 * 48 + 16
    saved = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert saved["use_dora"] is True and saved["layers_to_transform"] == [1]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--lr", "-1"], "learning_rate must be a positive number"),
        (["--scheduler", "step"], "unknown scheduler"),
        (["--targets", "nope_proj"], "nope_proj"),
        (["--method", "ia3"], "unknown method"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(run, tiny_model_dir, qa_file, args, needle):
    p = run("train", str(tiny_model_dir), "--data", str(qa_file), "--max-steps", "1", *args)
    assert p.returncode == 2, p.stderr
    assert needle in p.stderr and "Traceback" not in p.stderr


def test_missing_data_file_exits_2(run, tiny_model_dir, tmp_path):
    p = run("train", str(tiny_model_dir), "--data", str(tmp_path / "none.jsonl"))
    assert p.returncode == 2 and "none.jsonl" in p.stderr


def test_train_runs_recommends_own_json(run, tiny_model_dir, qa_file, tmp_path):
    from tests.trial.test_config_file import RECOMMEND

    cfg = tmp_path / "recommend.json"
    cfg.write_text(json.dumps(RECOMMEND))
    p = run("train", str(tiny_model_dir), "--data", str(qa_file), "--config", str(cfg), "--reference", "none",
            "--out", str(tmp_path / "a"), "--json")  # fmt: skip
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    # 36 training examples, batch 4 × accumulation 4, 3 epochs: ceil(ceil(36 / 4) / 4) · 3 = 9 steps
    assert res["status"] == "ok" and res["steps"] == 9
    assert res["extra"]["compute_dtype"] == "bf16"
