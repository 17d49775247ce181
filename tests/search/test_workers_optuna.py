"""An optuna search on many workers: the coordinator trains as worker 0 (it has nothing else to do and its
model is already loaded) beside N−1 worker processes it starts; the guarantees hold with it training: no
config run twice, the trial count, a kill -9 of the (training) coordinator, ``--resume``. Synthetic
objective through the workers' factory (``pool_driver.py``), on the local journal file; one real search on
the tiny model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from loratune.search.storage import read_journal_records

from .polling import wait_for
from .pool_driver import CONFIGS

DRIVER = Path(__file__).with_name("pool_driver.py")
ENV = {**os.environ, "LORATUNE_THREADS": "1", "PYTHONWARNINGS": "ignore", "LORATUNE_GRACE_S": "15",
       "LORATUNE_HEARTBEAT_S": "1"}  # fmt: skip
TRIALS = CONFIGS["optuna"].trials


def _driver(out: Path, ranlog: Path, sleep: float, workers: int = 2, load: float = 0) -> subprocess.Popen[str]:
    env = {**ENV, "LORATUNE_TEST_RANLOG": str(ranlog), "LORATUNE_TEST_SLEEP": str(sleep),
           "LORATUNE_TEST_LOAD_SLEEP": str(load)}  # fmt: skip
    return subprocess.Popen([sys.executable, str(DRIVER), str(out), "-", str(workers), "optuna"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _trials(out: Path) -> list[Any]:
    """The study's frozen trials (start times, states, attributes), read from the journal."""
    import optuna

    from loratune.search.storage import _journal

    storage = _journal(out / "study.journal", create=False)
    return list(optuna.load_study(study_name="loratune", storage=storage).get_trials(deepcopy=False))


def _pid(trial: Any) -> int:
    return int(str(trial.user_attrs["worker"]).rpartition(":")[2])


def _trained_keys(out: Path) -> list[str]:
    records = read_journal_records(out / "study.journal")
    return [r.key for r in records if r.result is not None and r.cached_study is None]


def test_the_coordinator_trains_as_worker_0_from_the_start_and_no_config_runs_twice(tmp_path: Path) -> None:
    out, ranlog = tmp_path / "out", tmp_path / "ran.log"
    proc = _driver(out, ranlog, 0.1)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    # two workers: this process and one started (worker 1); the coordinator is worker 0
    assert sorted(p.name for p in (out / "workers").iterdir()) == ["worker-1.log"]
    started = ranlog.read_text().splitlines()
    by_pid = Counter(int(line.rsplit("|", 1)[1]) for line in started)
    assert set(by_pid) == {proc.pid, _worker_pid(out)} and min(by_pid.values()) >= 2, by_pid
    # the baseline (trial 0) trains in the coordinator at once, before the started worker has begun any run
    trials = _trials(out)
    assert _pid(trials[0]) == proc.pid and trials[0].state.name == "COMPLETE"
    first_of_worker = min(t.datetime_start for t in trials if t.datetime_start and _pid(t) != proc.pid)
    assert trials[0].datetime_start < first_of_worker
    # the run count and no config twice: exactly as one worker counts them
    trained = _trained_keys(out)
    assert len(trained) == len(set(trained))
    assert len(trained) >= TRIALS
    assert len(started) == len(trained)  # nothing began twice, not even a run then answered from the cache
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]


def test_a_worker_still_loading_when_the_search_is_done_is_stopped_not_waited_for(tmp_path: Path) -> None:
    """The coordinator trains all 10 trials (~0.1 s each) while the started worker takes 20 s to load."""
    out, ranlog = tmp_path / "out", tmp_path / "ran.log"
    started = time.monotonic()
    proc = _driver(out, ranlog, 0.02, load=20)
    _out, err = proc.communicate(timeout=60)
    seconds = time.monotonic() - started
    assert proc.returncode == 0, err[-2000:]
    assert seconds < 15, seconds  # not the worker's 20 s (nor the 30 s a stop would wait)
    assert " joined study" not in (out / "workers" / "worker-1.log").read_text()
    assert {int(line.rsplit("|", 1)[1]) for line in ranlog.read_text().splitlines()} == {proc.pid}
    trained = _trained_keys(out)
    assert len(trained) == len(set(trained)) >= TRIALS


def test_kill9_of_the_training_coordinator_loses_nothing_and_resume_finishes(tmp_path: Path) -> None:
    out, ranlog = tmp_path / "out", tmp_path / "ran.log"
    proc = _driver(out, ranlog, 0.3)
    victim: dict[str, Any] = {}

    def coordinator_training() -> bool:
        if not (out / "study.journal").is_file():
            return False
        trials = _trials(out)
        done = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
        mine = [t for t in trials if t.state.name == "RUNNING" and "key" in t.user_attrs and _pid(t) == proc.pid]
        if len(done) >= 2 and mine:
            victim.update(number=mine[0].number, key=mine[0].user_attrs["key"],
                          done={t.number: t.user_attrs["result"] for t in done})  # fmt: skip
            return True
        return False

    wait_for(coordinator_training)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    again = _driver(out, ranlog, 0.3)
    _out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err[-2000:]
    after = {t.number: t for t in _trials(out)}
    for n, result in victim["done"].items():  # nothing finished was lost or changed
        assert after[n].user_attrs["result"] == result
    # the coordinator's run: failed (its pid is gone), requeued, and finished once, by a live worker
    assert after[victim["number"]].state.name == "FAIL"
    retried = [t for t in after.values() if t.system_attrs.get("failed_trial") == victim["number"]]
    assert len(retried) == 1 and retried[0].state.name in ("COMPLETE", "PRUNED")
    assert retried[0].user_attrs["key"] == victim["key"]
    trained = _trained_keys(out)
    assert len(trained) == len(set(trained)) >= TRIALS
    started = [line.rsplit("|", 1)[0] for line in ranlog.read_text().splitlines()]
    assert len(set(started)) <= len(started) <= len(set(started)) + 1  # only the killed run began twice
    assert (out / "best_config.json").is_file()
    # the resume started no worker: the one from before was still there, and did its share
    assert sorted(p.name for p in (out / "workers").iterdir()) == ["worker-1.log"]


def test_real_tiny_model_optuna_search_on_two_workers(tmp_path: Path, tiny_model: Path, qa_file: Path) -> None:
    """`loratune search … --strategy optuna --workers 2` with real training: this process trains with the
    model it loaded, beside one worker process that joins, and exits, with the search."""
    from .cli_driver import __file__ as cli_driver

    out = tmp_path / "two"
    args = [
        "search", str(tiny_model), "--data", str(qa_file), "--out", str(out), "--strategy", "optuna", "--trials",
        "4", "--steps", "2", "--batch-size", "2", "--max-length", "48", "--val-examples", "4", "--max-r", "4",
        "--modules", "attention", "--lr", "5e-3", "--export", "peft", "--no-progress", "--workers", "2",
    ]  # fmt: skip
    done = subprocess.run([sys.executable, cli_driver, *args], env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 worker process(es) started; this process trains as worker 0" in done.stdout
    import re

    log = (out / "workers" / "worker-1.log").read_text()
    said = re.search(r"done, (\d+) run\(s\) trained", log)
    # runs this short may all be done before the worker has loaded its model: it is then stopped unjoined
    assert said is not None or " joined study" not in log, log[-2000:]
    trained_there = int(said.group(1)) if said else 0
    trained = _trained_keys(out)
    assert len(trained) == len(set(trained)) >= 4
    assert 0 <= trained_there < len(trained)  # the coordinator trained from the start
    assert json.loads((out / "best_config.json").read_text())["chosen"]["variant"]["modules"] == "attention"


def _worker_pid(out: Path) -> int:
    import re

    text = (out / "workers" / "worker-1.log").read_text()
    return int(re.findall(r":(\d+), [^)]*\) joined", text)[0])
