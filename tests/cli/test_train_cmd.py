"""`loratune train` and `loratune eval` as a user runs them, on a tiny Llama with SmolLM2's tokenizer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest


def test_train_json_then_eval_with_the_adapter(cli, tiny_model_dir, qa_file, tmp_path):
    out = tmp_path / "adapter"
    p = cli(
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

    e = cli(
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


def test_train_takes_recommend_json_and_flags_override_it(cli, tiny_model_dir, qa_file, tmp_path):
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
    p = cli("train", str(tiny_model_dir), "--data", str(qa_file), "--config", str(cfg), "--max-steps", "3",
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
        (["--lr", "-1"], "--lr (learning_rate) must be greater than 0"),
        (["--scheduler", "step"], "unknown scheduler"),
        (["--targets", "nope_proj"], "nope_proj"),
        (["--method", "ia3"], "unknown method"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, tiny_model_dir, qa_file, args, needle):
    p = cli("train", str(tiny_model_dir), "--data", str(qa_file), "--max-steps", "1", *args)
    assert p.returncode == 2, p.stderr
    assert needle in p.stderr and "Traceback" not in p.stderr


def test_missing_data_file_exits_2(cli, tiny_model_dir, tmp_path):
    p = cli("train", str(tiny_model_dir), "--data", str(tmp_path / "none.jsonl"))
    assert p.returncode == 2 and "none.jsonl" in p.stderr


def test_train_runs_recommends_own_json(cli, tiny_model_dir, qa_file, tmp_path):
    from tests.trial.test_config_file import RECOMMEND

    cfg = tmp_path / "recommend.json"
    cfg.write_text(json.dumps(RECOMMEND))
    p = cli("train", str(tiny_model_dir), "--data", str(qa_file), "--config", str(cfg), "--reference", "none",
            "--out", str(tmp_path / "a"), "--json")  # fmt: skip
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    # 36 training examples, batch 4 × accumulation 4, 3 epochs: ceil(ceil(36 / 4) / 4) · 3 = 9 steps
    assert res["status"] == "ok" and res["steps"] == 9
    assert res["extra"]["compute_dtype"] == "bf16"


CHEAP_FAILURES = [
    (["train", "smollm2-135m", "--data", "/nonexistent.jsonl"], "/nonexistent.jsonl does not exist"),
    (["eval", "smollm2-135m", "--data", "/nonexistent.jsonl"], "/nonexistent.jsonl does not exist"),
    (["train", "smollm2-135m", "--data", "{bad_suffix}"], "unknown data file type '.xyz'"),
    (["train", "smollm2-135m", "--data", "{good}", "--val-fraction", "1.5"], "validation fraction must be in (0, 1)"),
    (["train", "smollm2-135m", "--data", "{good}", "--reference", "/none.jsonl"], "/none.jsonl does not exist"),
    (["train", "smollm2-135m", "--data", "{good}", "--lr", "-1"], "--lr (learning_rate) must be greater than 0"),
    (["train", "smollm2-135m", "--data", "{good}", "--dtype", "fp8"], "unknown compute dtype 'fp8'"),
    (["train", "smollm2-135m", "--data", "{good}", "--method", "ia3"], "unknown method"),
    (["train", "no-such-model", "--data", "{good}"], "no-such-model"),
    (["eval", "smollm2-135m", "--data", "{good}", "--split", "test"], "unknown --split 'test'"),
    (["eval", "smollm2-135m", "--data", "{good}", "--adapter", "{tmp}"], "is not a PEFT adapter"),
]

_PROBE = """
import sys
from loratune.cli.app import main
sys.argv = ["loratune", *sys.argv[1:]]
try:
    main()
except SystemExit as e:
    heavy = [m for m in ("torch", "transformers", "peft") if m in sys.modules]
    sys.stderr.write(f"HEAVY={heavy}\\n")
    raise
"""


@pytest.mark.parametrize(("args", "needle"), CHEAP_FAILURES)
def test_input_errors_fail_before_torch_is_imported(args, needle, qa_file, tmp_path):
    import os
    import subprocess

    bad_suffix = tmp_path / "data.xyz"
    bad_suffix.write_text("x\n")
    args = [a.format(bad_suffix=bad_suffix, good=qa_file, tmp=tmp_path) for a in args]
    src = str(Path(__file__).resolve().parents[2] / "src")
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        env={**os.environ, "PYTHONPATH": src, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert lines[-1] == "HEAVY=[]", proc.stderr  # nothing heavy was imported before the error
    assert len(lines) == 2 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr


def _long_rows_in_train_file(tmp_path: Path) -> Path:
    """40 QA rows; the 4 longest (> 256 tokens, so SDPA) all fall on the train side of the seed-0 split."""
    from loratune.data import split_train_val

    train_idx, _ = split_train_val(list(range(40)), val_fraction=0.1, seed=0)
    long_idx = set(train_idx[:4])
    rows = [
        {"prompt": ("Some context to read first. " * 60 if i in long_idx else "") + f"What is {i} plus {i}?",
         "response": f"It is {2 * i}."}
        for i in range(40)
    ]  # fmt: skip
    p = tmp_path / "mixed.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def test_eval_uses_the_attention_kernel_train_used(cli, tiny_model_dir, tmp_path):
    import shutil

    data = _long_rows_in_train_file(tmp_path)
    out = tmp_path / "adapter"
    p = cli("train", str(tiny_model_dir), "--data", str(data), "--r", "4", "--max-steps", "2", "--batch-size", "8",
            "--reference", "none", "--dtype", "fp32", "--out", str(out), "--json")  # fmt: skip
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    # Train sees its long rows: SDPA. The validation rows alone are short (eager under the old eval rule).
    assert res["extra"]["attention"] == "sdpa"
    common = ["--data", str(data), "--dtype", "fp32", "--no-qa", "--json"]
    with_adapter = json.loads(cli("eval", str(tiny_model_dir), "--adapter", str(out), *common).stdout)
    assert with_adapter["attention"] == "sdpa"
    assert with_adapter["loss"] == pytest.approx(res["val_loss_after"], rel=1e-5)
    # Without metrics.json (or without an adapter) the same rule over the same rows decides: still SDPA.
    bare = tmp_path / "bare"
    shutil.copytree(out, bare)
    (bare / "metrics.json").unlink()
    assert json.loads(cli("eval", str(tiny_model_dir), "--adapter", str(bare), *common).stdout)["attention"] == "sdpa"
    base = json.loads(cli("eval", str(tiny_model_dir), *common).stdout)
    assert base["attention"] == "sdpa" and base["loss"] == pytest.approx(res["val_loss_before"], rel=1e-5)


def test_train_and_eval_output_in_a_pipe_reads_at_80_columns(cli, tiny_model_dir, qa_file, tmp_path, monkeypatch):
    from loratune.cli import common

    monkeypatch.setattr(common.console, "width", 80)
    monkeypatch.setattr(common.err_console, "width", 80)
    out = tmp_path / "adapter"
    p = cli("train", str(tiny_model_dir), "--data", str(qa_file), "--r", "4", "--max-steps", "3",
            "--reference", "none", "--dtype", "fp32", "--out", str(out))  # fmt: skip
    assert p.returncode == 0, p.stderr
    e = cli("eval", str(tiny_model_dir), "--adapter", str(out), "--data", str(qa_file), "--dtype", "fp32",
            "--qa-limit", "2")  # fmt: skip
    assert e.returncode == 0, e.stderr
    for text in (p.stdout, p.stderr, e.stdout, e.stderr):
        assert "\x1b" not in text and "\r" not in text  # no colour codes, no redrawn frames
        for line in text.splitlines():
            if not line.startswith(("data: ", "adapter + metrics.json")):  # paths stay whole, for copying
                assert len(line) <= 80, line
    progress = [line for line in p.stderr.splitlines() if line.startswith("training ")]
    assert [line.split()[1] for line in progress] == ["1/3", "2/3", "3/3"]
    assert all("eta" in line and "tok/s" in line for line in progress)
    assert "validation loss" in p.stdout and "final train loss" in p.stdout
    assert any(line.startswith("scoring 1/1") for line in e.stderr.splitlines())
    assert any(line.startswith("decoding 2/2") for line in e.stderr.splitlines())
    assert "perplexity" in e.stdout and "greedy answer" in e.stdout
