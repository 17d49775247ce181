"""The real search path on a tiny model: CLI errors, kill -9 mid-search then --resume."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from loratune.search.study import SearchStudy, default_storage

from .cli_driver import app

DRIVER = Path(__file__).with_name("cli_driver.py")
ENV = {**os.environ, "LORATUNE_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _args(model: Path, data: Path, out: Path) -> list[str]:
    return [
        "search", str(model), "--data", str(data), "--out", str(out), "--steps", "4", "--batch-size", "2",
        "--lr-runs", "1", "--max-length", "64", "--val-examples", "8", "--max-r", "8", "--lr", "5e-3",
        "--export", "peft", "--no-progress",
    ]  # fmt: skip


def test_resume_needs_a_study_and_a_study_needs_resume(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["search", "smollm2-135m", "--out", str(tmp_path / "none"), "--resume"])
    assert res.exit_code != 0 and "nothing to resume" in str(res.exception)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "search.json").write_text("{}")
    res = runner.invoke(app, ["search", "smollm2-135m", "--out", str(tmp_path / "x")])
    assert "already holds a search" in str(res.exception)
    res = runner.invoke(app, ["search", "smollm2-135m", "--out", str(tmp_path / "y"), "--cost", "flops"])
    assert "unknown cost 'flops'" in str(res.exception)


def _states(db: Path) -> list[tuple[int, str, int]]:
    """(number, state, has a config key) per trial: the key is stored right before training starts."""
    if not db.is_file():
        return []
    query = (
        "SELECT t.number, t.state, (SELECT COUNT(*) FROM trial_user_attributes a "
        "WHERE a.trial_id = t.trial_id AND a.key = 'key') FROM trials t ORDER BY t.number"
    )
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return list(con.execute(query))
    except sqlite3.Error:  # tables not created yet / locked for a moment
        return []


def test_kill9_mid_search_then_resume_loses_nothing_and_reruns_nothing(
    tmp_path: Path, tiny_model: Path, qa_file: Path
) -> None:
    out = tmp_path / "run"
    db = out / "study.db"
    proc = subprocess.Popen(
        [sys.executable, str(DRIVER), *_args(tiny_model, qa_file, out)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    killed = False
    while time.time() < deadline and proc.poll() is None:
        states = _states(db)
        if sum(s == "COMPLETE" for _, s, _k in states) >= 3 and any(s == "RUNNING" and k for _, s, k in states):
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.02)
    proc.wait(timeout=30)
    assert killed, "the search ended before it could be killed"
    assert proc.returncode == -signal.SIGKILL

    storage = default_storage(out)
    before = {r.number: r for r in SearchStudy(storage, fingerprint="", recover=False).records()}
    done_before = {n: r for n, r in before.items() if r.state == "COMPLETE"}
    running_before = [r for r in before.values() if r.state == "RUNNING" and r.key]
    assert len(done_before) >= 3 and running_before  # killed mid-run, not between runs

    res = subprocess.run(
        [
            sys.executable,
            str(DRIVER),
            "search",
            str(tiny_model),
            "--out",
            str(out),
            "--resume",
            "--no-progress",
            "--train-final",
            "--final-steps",
            "2",
        ],  # fmt: skip
        env=ENV,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    after = {r.number: r for r in SearchStudy(storage, fingerprint="").records()}
    # none lost: every run finished before the kill is still there, unchanged
    for n, rec in done_before.items():
        assert after[n].state == "COMPLETE" and after[n].result.to_dict() == rec.result.to_dict()
    # none trained twice: each config key was trained by exactly one trial
    trained = [r.key for r in after.values() if r.result is not None and r.cached_study is None]
    assert len(trained) == len(set(trained))
    assert all(
        r.cached_study == "self"
        for r in after.values()
        if r.number > max(before) and r.key in {d.key for d in done_before.values()}
    )
    # the run the kill interrupted was marked failed and its config trained again, to the end
    for rec in running_before:
        assert after[rec.number].state == "FAIL"
        assert any(r.key == rec.key and r.state == "COMPLETE" and r.number > rec.number for r in after.values())
    assert "left running by a killed search" in res.stderr
    best = json.loads((out / "best_config.json").read_text())
    assert (out / "exports" / "peft.json").is_file()
    assert len(after) > len(before)
    # --train-final trained the pick and saved it in PEFT's format
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["r"] == best["config"]["r"]
    assert best["final"]["steps"] == 2 and best["final"]["status"] == "ok"


def test_val_data_is_the_validation_set_and_output_reads_in_a_pipe(
    tmp_path: Path, tiny_model: Path, qa_file: Path
) -> None:
    from .tiny import make_qa_file

    val = make_qa_file(tmp_path / "val.jsonl", n=6)
    out = tmp_path / "run"
    args = [
        "search", str(tiny_model), "--data", str(qa_file), "--val-data", str(val), "--out", str(out),
        "--steps", "2", "--batch-size", "2", "--lr-runs", "1", "--max-length", "64", "--val-examples", "4",
        "--max-r", "4", "--modules", "attention", "--lr", "5e-3", "--export", "none", "--no-progress",
        "--threads", "1",
    ]  # fmt: skip
    res = subprocess.run(
        [sys.executable, str(DRIVER), *args],
        env={**ENV, "COLUMNS": "80"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    text = res.stdout
    assert "48 train / 4 val examples" in text  # nothing split off --data; 4 of the 6 validation rows
    assert "\x1b[" not in text + res.stderr  # a pipe gets no colour codes
    # the table fits the width; other lines are never cut (a path stays whole for copy and paste)
    assert all(len(line) <= 80 for line in text.splitlines() if line[:1] in "┏┃┡│└")
    assert f"see {out / 'best_config.json'}" in text
    assert "left: ~" in text  # the estimated time left after the first trained run
    saved = json.loads((out / "search.json").read_text())
    assert saved["options"]["val_data"] == str(val) and saved["options"]["threads"] == 1
    assert "storage_url" not in saved
