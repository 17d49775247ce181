"""``train`` / ``eval`` / ``search`` / ``budget`` on classification data through the CLI, with a tiny BERT
classifier on disk (2 layers, 64 wide, all-MiniLM-L6-v2's tokenizer); bad input: one line, exit 2."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from loratune.cli.app import app


@pytest.fixture(scope="module")
def tiny_bert(tiny_config: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import AutoTokenizer, BertModel

    from loratune.models.source import embedded_encoder_dir

    directory = tmp_path_factory.mktemp("bert") / "model"
    tok = AutoTokenizer.from_pretrained(str(embedded_encoder_dir()), local_files_only=True)
    torch.manual_seed(0)
    cfg = tiny_config("bert", vocab_size=len(tok), max_position_embeddings=64)
    BertModel(cfg).save_pretrained(directory, safe_serialization=True)
    tok.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def cls_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(0)
    words = ["good", "bad"]
    rows = []
    for i in range(60):
        label = rng.choice(words)
        rows.append({"sentence": f"item {i} is {label} really", "label": "pos" if label == "good" else "neg"})
    path = tmp_path_factory.mktemp("data") / "cls.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _pythonpath() -> dict[str, str]:
    import os

    return {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loratune.cli.app", *argv],
        capture_output=True,
        text=True,
        # PYTHONPATH passes through: a checkout run with PYTHONPATH=src tests its own code
        env={"COLUMNS": "120", "PATH": "", "LORATUNE_THREADS": "1", **_pythonpath()},
        stdin=subprocess.DEVNULL,
    )


def test_train_json_and_eval_reproduce(tiny_bert: Path, cls_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "adapter"
    args = ["train", str(tiny_bert), "--data", str(cls_file), "--max-steps", "6", "--batch-size", "8"]
    r = runner.invoke(app, [*args, "--lr", "5e-3", "--r", "2", "--max-length", "32", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    for k in ("val_loss_before", "val_loss_after", "val_accuracy_before", "val_accuracy_after", "val_f1_after"):
        assert d[k] is not None, k
    assert d["extra"]["task_type"] == "seq-cls" and d["extra"]["labels"] == ["neg", "pos"]
    assert sum(d["extra"]["class_counts"]["train"].values()) + sum(d["extra"]["class_counts"]["val"].values()) == 60
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val_accuracy_after"] == d["val_accuracy_after"]
    e = runner.invoke(
        app, ["eval", str(tiny_bert), "--data", str(cls_file), "--adapter", str(out), "--max-length", "32", "--json"]
    )
    assert e.exit_code == 0, e.output
    ed = json.loads(e.stdout)
    assert ed["accuracy"] == d["val_accuracy_after"] and ed["loss"] == pytest.approx(d["val_loss_after"], rel=1e-5)


def test_train_table_shows_before_after(tiny_bert: Path, cls_file: Path, tmp_path: Path) -> None:
    r = CliRunner().invoke(
        app,
        ["train", str(tiny_bert), "--data", str(cls_file), "--max-steps", "2", "--max-length", "32"]
        + ["--out", str(tmp_path / "a"), "--no-progress"],
    )
    assert r.exit_code == 0, r.output
    for row in ("validation loss", "validation accuracy", "validation macro-F1"):
        assert row in r.output
    assert "train: neg" in r.output.replace("\n", " ") or "neg" in r.output


def test_unseen_validation_label_is_one_line_exit_2(tiny_bert: Path, cls_file: Path, tmp_path: Path) -> None:
    val = tmp_path / "val.jsonl"
    val.write_text(json.dumps({"sentence": "x", "label": "neutral"}) + "\n")
    p = cli("train", str(tiny_bert), "--data", str(cls_file), "--val-data", str(val), "--max-steps", "1")
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr + p.stdout
    # (a library's import-time notice, e.g. bitsandbytes' on a CPU machine, may precede it)
    lines = [line for line in p.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "'neutral'" in lines[0] and "never saw" in lines[0]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("--format", "classification", "--task-type", "causal-lm"), "needs --task-type seq-cls"),
        (("--task-type", "cls"), "unknown task type"),
    ],
)
def test_bad_task_options_exit_2(tiny_bert: Path, cls_file: Path, argv: tuple[str, ...], says: str) -> None:
    p = cli("train", str(tiny_bert), "--data", str(cls_file), *argv)
    assert p.returncode == 2 and says in p.stderr and "Traceback" not in p.stderr


def test_classification_format_on_qa_data_exit_2(tiny_bert: Path, tmp_path: Path) -> None:
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n")
    p = cli("train", str(tiny_bert), "--data", str(qa), "--format", "classification")
    assert p.returncode == 2 and "expected a 'label' column" in p.stderr and "Traceback" not in p.stderr
    p = cli("search", "smollm2-135m", "--data", str(qa), "--metric", "accuracy", "--task-type", "causal-lm")
    assert p.returncode == 2 and "needs a classifier" in p.stderr
    p = cli("search", "smollm2-135m", "--data", str(qa), "--metric", "accuracy", "--out", str(tmp_path / "s"))
    assert p.returncode == 2 and "needs classification data" in p.stderr and "Traceback" not in p.stderr


def test_budget_counts_the_head(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        app, ["budget", "bert-base-uncased", "--task-type", "seq-cls", "--num-labels", "3", "--targets", "query,value"]
    )
    assert r.exit_code == 0, r.output
    assert "modules_to_save: 2,307 parameters" in r.output  # 768·3 + 3: the classifier PEFT's SEQ_CLS trains


def test_search_on_accuracy(tiny_bert: Path, cls_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "s"
    r = CliRunner().invoke(
        app,
        ["search", str(tiny_bert), "--data", str(cls_file), "--metric", "accuracy", "--steps", "2"]
        + ["--batch-size", "8", "--max-length", "32", "--max-r", "8", "--lr-runs", "1", "--modules", "attention"]
        + ["--out", str(out), "--no-progress", "--threads", "1"],
    )
    assert r.exit_code == 0, r.output
    best = json.loads((out / "best_config.json").read_text())
    assert best["config"]["task_type"] == "SEQ_CLS" and "accuracy" in best["chosen"]
    rep = CliRunner().invoke(app, ["report", str(out)])
    assert rep.exit_code == 0, rep.output
    assert "val acc after</th>" in (out / "report.html").read_text()
