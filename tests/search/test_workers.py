"""Many workers on one study (synthetic objective, no training): on the local journal file and on a real
PostgreSQL (the ``postgres`` fixture): the pick of one worker, no config run twice, kill -9 of a worker,
of the coordinator, and a database that goes away and comes back."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from loratune.errors import ConfigError
from loratune.search import SearchStudy, run_search

from .polling import wait_for
from .pool_driver import CONFIGS, LoggedObjective, inputs

DRIVER = Path(__file__).with_name("pool_driver.py")
ENV = {**os.environ, "LORATUNE_THREADS": "1", "PYTHONWARNINGS": "ignore", "LORATUNE_GRACE_S": "15",
       "LORATUNE_HEARTBEAT_S": "1"}  # fmt: skip


@pytest.fixture(scope="module")
def anatomy():  # type: ignore[no-untyped-def]
    from loratune.models import load_anatomy, resolve_source

    return load_anatomy(resolve_source("smollm2-135m"))


def _driver(
    out: Path, storage: str, workers: int, strategy: str, ranlog: Path, sleep: float, **extra: str
) -> subprocess.Popen[str]:
    env = {**ENV, "LORATUNE_TEST_RANLOG": str(ranlog), "LORATUNE_TEST_SLEEP": str(sleep), **extra}
    return subprocess.Popen(
        [sys.executable, str(DRIVER), str(out), storage, str(workers), strategy],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _records(storage: str) -> list[Any]:
    return SearchStudy(storage, fingerprint="", create=False, recover=False).records()


def _trained_keys(records: list[Any]) -> list[str]:
    return [r.key for r in records if r.result is not None and r.cached_study is None]


class _Trials:
    """The study's trials, read again on each call through one storage (opened once the study exists)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.study: Any = None

    def __call__(self) -> list[Any]:
        if self.study is None:
            try:
                self.study = SearchStudy(self.url, fingerprint="", create=False, recover=False).study
            except ConfigError:
                return []
        return list(self.study.get_trials(deepcopy=False))


def _best(out: Path) -> dict[str, Any]:
    best: dict[str, Any] = json.loads((out / "best_config.json").read_text())
    return best


def test_two_local_workers_pick_what_one_worker_picks(tmp_path: Path, anatomy: Any) -> None:
    one = run_search(CONFIGS["staged"], tmp_path / "one", inputs=inputs(anatomy), objective=LoggedObjective())
    ranlog = tmp_path / "ran.log"
    proc = _driver(tmp_path / "two", "-", 2, "staged", ranlog, 0.1)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert (tmp_path / "two" / "study.journal").is_file()  # several local workers share Optuna's journal file
    # the knee, the stages, the counts: one worker's best_config.json, byte for byte
    assert _best(tmp_path / "two") == _best(tmp_path / "one")
    assert one.runs_trained == len(ranlog.read_text().splitlines())
    # both workers trained (the stage's runs went out together), and no config twice
    pids = Counter(line.rsplit("|", 1)[1] for line in ranlog.read_text().splitlines())
    assert len(pids) == 2
    lines = [line.rsplit("|", 1)[0] for line in ranlog.read_text().splitlines()]
    assert len(lines) == len(set(lines))
    # the report reads the journal
    from loratune.report import load_study

    data = load_study(tmp_path / "two")
    assert data.choice is not None and data.choice.chosen.variant == one.choice.chosen.variant


def test_an_idle_worker_tries_two_ranks_up_and_the_pick_stays_one_workers(tmp_path: Path, anatomy: Any) -> None:
    """One LR per variant: each rank step is one run, so the second worker runs the rank after next ahead
    of need, in a side study; what a stage then asks for is adopted, and the search's own study — its
    knee, its counts — is the one-worker study."""
    one = run_search(CONFIGS["ahead"], tmp_path / "one", inputs=inputs(anatomy), objective=LoggedObjective())
    ranlog = tmp_path / "ran.log"
    proc = _driver(tmp_path / "two", "-", 2, "ahead", ranlog, 0.1)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert _best(tmp_path / "two") == _best(tmp_path / "one")
    from loratune.search.storage import read_journal_records

    main = read_journal_records(tmp_path / "two" / "study.journal")
    ahead = read_journal_records(tmp_path / "two" / "study.journal", name="loratune.ahead")
    assert ahead and all(r.state == "COMPLETE" for r in ahead)
    adopted = {r.key for r in ahead} & {r.key for r in main}
    assert adopted  # asked for, and answered by the run tried ahead
    started = [line.rsplit("|", 1)[0] for line in ranlog.read_text().splitlines()]
    assert len(started) == len(set(started)) <= one.runs_trained + len(ahead) - len(adopted)


def test_the_coordinator_free_before_the_baseline_ends_trains_the_first_doubling(tmp_path: Path, anatomy: Any) -> None:
    """The baseline's two runs go to both trainers; the coordinator, done first, does not idle: it trains the
    rank stage's first doubling (r 8 → 16, alpha/r kept) ahead of need, and the rank stage adopts it. The
    search's own study and pick stay one worker's."""
    run_search(CONFIGS["staged"], tmp_path / "one", inputs=inputs(anatomy), objective=LoggedObjective())
    ranlog = tmp_path / "ran.log"
    proc = _driver(tmp_path / "two", "-", 2, "staged", ranlog, 0.25, LORATUNE_TEST_WAIT_FOR_PEER="1")
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert _best(tmp_path / "two") == _best(tmp_path / "one")
    runs = [line.split("|") for line in ranlog.read_text().splitlines()]
    coordinator = [label for label, _lr, _steps, pid in runs if pid == str(proc.pid)]
    worker = [label for label, _lr, _steps, pid in runs if pid != str(proc.pid)]
    assert coordinator[:2] == ["r=8 α=16 attention", "r=16 α=32 attention"], coordinator
    assert worker[0] == "r=8 α=16 attention"  # the baseline's other run was still training then
    from loratune.search.storage import read_journal_records

    main = read_journal_records(tmp_path / "two" / "study.journal")
    ahead = read_journal_records(tmp_path / "two" / "study.journal", name="loratune.ahead")
    doubled = {r.key for r in ahead if r.variant.label() == "r=16 α=32 attention"}
    assert doubled and doubled <= {r.key for r in main if r.stage == "rank"}  # adopted by the rank stage
    started = [line.rsplit("|", 1)[0] for line in ranlog.read_text().splitlines()]
    assert len(started) == len(set(started))


@pytest.mark.parametrize("strategy", ["ladder", "optuna-ladder"])
def test_the_ladder_rungs_go_out_to_every_worker(tmp_path: Path, anatomy: Any, strategy: str) -> None:
    """With workers, each rung's runs are handed out like a stage's: both processes train rung runs, none
    twice; staged keeps one worker's best_config.json, ladder included."""
    from .synthetic import STEPS

    ranlog = tmp_path / "ran.log"
    proc = _driver(tmp_path / "two", "-", 2, strategy, ranlog, 0.05)
    _out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-2000:]
    runs = [line.split("|") for line in ranlog.read_text().splitlines()]
    rung_pids = Counter(pid for _label, _lr, steps, pid in runs if int(steps) > STEPS)
    assert len(rung_pids) == 2, rung_pids  # the coordinator and the worker process both trained rung runs
    started = [line.rsplit("|", 1)[0] for line in ranlog.read_text().splitlines()]
    assert len(started) == len(set(started))
    best = _best(tmp_path / "two")
    assert best["ladder"]["rungs"]
    if strategy == "ladder":
        run_search(CONFIGS["ladder"], tmp_path / "one", inputs=inputs(anatomy), objective=LoggedObjective())
        assert best == _best(tmp_path / "one")
    # every rung run the ladder reports was trained once, and nothing more
    assert sum(rung_pids.values()) == sum(len(v["lrs"]) for r in best["ladder"]["rungs"] for v in r["variants"])


def test_kill9_of_a_worker_during_a_rung_loses_nothing(tmp_path: Path, anatomy: Any) -> None:
    """A worker process killed while it trains a ladder rung's run: the coordinator finds the dead pid,
    requeues the run (Optuna's retry callback) and trains it; nothing finished reruns; the pick, the ladder
    and every number in best_config.json are those of one worker."""
    from .synthetic import STEPS

    ranlog = tmp_path / "ran.log"
    proc = _driver(tmp_path / "two", "-", 2, "ladder", ranlog, 0.1)

    seen: list[str] = []

    def rung_run_of_the_worker() -> bool:
        lines = ranlog.read_text().splitlines() if ranlog.is_file() else []
        seen.extend(x for x in lines if int(x.split("|")[2]) > STEPS and not x.endswith(f"|{proc.pid}"))
        return bool(seen)

    wait_for(rung_run_of_the_worker)
    victim = seen[0]
    os.kill(int(victim.rsplit("|", 1)[1]), signal.SIGKILL)
    _out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-2000:]
    one = run_search(CONFIGS["ladder"], tmp_path / "one", inputs=inputs(anatomy), objective=LoggedObjective())
    assert _best(tmp_path / "two") == _best(tmp_path / "one")
    started = Counter(line.rsplit("|", 1)[0] for line in ranlog.read_text().splitlines())
    again = [run for run, n in started.items() if n > 1]
    assert again == [victim.rsplit("|", 1)[0]]  # the killed run began again; nothing else did
    rung_runs = sum(n for run, n in started.items() if int(run.split("|")[2]) > STEPS)
    assert rung_runs - 1 == sum(len(v["lrs"]) for r in one.best["ladder"]["rungs"] for v in r["variants"])


def test_three_workers_on_postgres_sample_and_prune_without_running_a_config_twice(tmp_path: Path, postgres) -> None:  # type: ignore[no-untyped-def]
    url = postgres.new_database()
    ranlog = tmp_path / "ran.log"
    proc = _driver(tmp_path / "out", url, 3, "optuna", ranlog, 0.15)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    records = _records(url)
    trained = _trained_keys(records)
    assert len(trained) == len(set(trained)) >= CONFIGS["optuna"].trials
    started = ranlog.read_text().splitlines()
    assert len(started) == len(trained)  # nothing began twice, not even a run that was then answered
    assert len({line.rsplit("|", 1)[1] for line in started}) == 3
    assert any(r.state == "PRUNED" for r in records)
    assert not [r for r in records if r.state in ("RUNNING", "WAITING")]


def test_processes_opening_a_fresh_database_at_once_all_get_it(tmp_path: Path, postgres) -> None:  # type: ignore[no-untyped-def]
    """A search and its workers (or anything else) may create a new server database's tables at the same
    moment; PostgreSQL lets one win and fails the others (``pg_type`` unique violation): they must retry."""
    url = postgres.new_database()
    go = tmp_path / "go"
    code = (
        "import os, sys, time\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.005)\n"
        "from loratune.search.storage import make_storage\n"
        f"make_storage({url!r}); print('ok')\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=ENV) for _ in range(6)]  # fmt: skip
    time.sleep(3)  # every one has imported what it needs and waits
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert [o.strip() for o, _e in outs] == ["ok"] * len(procs), [e[-500:] for _o, e in outs]


def test_kill9_of_a_worker_loses_nothing_and_reruns_only_its_run(tmp_path: Path, postgres) -> None:  # type: ignore[no-untyped-def]
    url = postgres.new_database()
    ranlog = tmp_path / "ran.log"
    proc = _driver(tmp_path / "out", url, 2, "staged", ranlog, 0.25)
    victim: dict[str, Any] = {}

    trials = _Trials(url)

    def running_with_worker() -> bool:
        recs = trials()
        done = [t for t in recs if t.state.name == "COMPLETE"]
        # a worker process's run, not the coordinator's (it trains queued runs too, as worker 0)
        mine = f":{proc.pid}"
        running = [t for t in recs if t.state.name == "RUNNING" and not t.user_attrs.get("worker", mine).endswith(mine)]
        if len(done) >= 2 and running:
            victim.update(number=running[0].number, key=running[0].user_attrs["key"],
                          pid=int(running[0].user_attrs["worker"].rpartition(":")[2]),
                          done={t.number: t.user_attrs["result"] for t in done})  # fmt: skip
            return True
        return False

    wait_for(running_with_worker)
    os.kill(victim["pid"], signal.SIGKILL)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    after = {r.number: r for r in _records(url)}
    # nothing finished was lost or changed
    for n, result in victim["done"].items():
        assert after[n].state == "COMPLETE" and after[n].result.to_dict() == result
    # the killed run: failed, requeued by Optuna's retry callback, run again to the end by the other worker
    assert after[victim["number"]].state == "FAIL"
    again = [r for r in after.values() if r.key == victim["key"] and r.state == "COMPLETE"]
    assert len(again) == 1 and again[0].number > victim["number"]
    trained = _trained_keys(list(after.values()))
    assert len(trained) == len(set(trained))
    started = [line.rsplit("|", 1)[0] for line in ranlog.read_text().splitlines()]
    # only the killed run may have begun twice (the kill can land between its claim and its first step)
    assert len(set(started)) <= len(started) <= len(set(started)) + 1
    assert _best(tmp_path / "out")["chosen"]["variant"] == CONFIG_PICK


CONFIG_PICK = {"r": 32, "alpha": 32.0, "modules": "all-linear", "method": "lora", "dropout": 0.05,
               "use_rslora": False, "layers": None}  # fmt: skip


def _resume(out: Path, url: str, ranlog: Path, sleep: float) -> subprocess.Popen[str]:
    """The driver again on the same folder and storage (run_search continues the study)."""
    return _driver(out, url, 2, "staged", ranlog, sleep)


def test_kill9_of_the_coordinator_then_resume_with_the_workers_still_running(tmp_path: Path, postgres) -> None:  # type: ignore[no-untyped-def]
    url = postgres.new_database()
    ranlog, out = tmp_path / "ran.log", tmp_path / "out"
    proc = _driver(out, url, 2, "staged", ranlog, 0.2)  # worker 0 is the coordinator, worker 1 a process
    wait_for(lambda: len(_joined(out)) == 1 and ranlog.is_file() and len(ranlog.read_text().splitlines()) >= 4)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    worker_pids = _joined(out)
    time.sleep(0.5)
    assert all(_pid_alive(p) for p in worker_pids)  # the worker outlives its coordinator
    again = _resume(out, url, ranlog, 0.2)
    _out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err[-2000:]
    # the old worker and the new coordinator did the rest: the resume started no worker process
    started = ranlog.read_text().splitlines()
    assert {int(line.rsplit("|", 1)[1]) for line in started} <= worker_pids | {proc.pid, again.pid}
    assert _joined(out) == worker_pids
    # a run began twice only if the killed coordinator was training it; none finished twice
    keys = Counter(line.rsplit("|", 1)[0] for line in started)
    twice = [k for k, n in keys.items() if n > 1]
    assert len(twice) <= 1 and all(f"{k}|{proc.pid}" in started for k in twice)
    trained = _trained_keys(_records(url))
    assert len(trained) == len(set(trained))
    assert _best(out)["chosen"]["variant"] == CONFIG_PICK
    wait_for(lambda: not any(_pid_alive(p) for p in worker_pids), 30)  # done: they exit


def test_a_database_that_goes_away_stops_everyone_with_one_line_and_resume_continues(tmp_path: Path, postgres) -> None:  # type: ignore[no-untyped-def]
    url = postgres.new_database()
    ranlog, out = tmp_path / "ran.log", tmp_path / "out"
    proc = _driver(out, url, 2, "staged", ranlog, 0.2)
    wait_for(lambda: ranlog.is_file() and len(ranlog.read_text().splitlines()) >= 4)
    done_before = {r.number: r.result.to_dict() for r in _records(url) if r.state == "COMPLETE"}
    postgres.stop("immediate")
    try:
        _out, err = proc.communicate(timeout=90)
        assert proc.returncode != 0
        assert "lost the study storage" in err and "--resume" in err
        for log in (out / "workers").glob("worker-*.log"):
            wait_for(lambda log=log: "lost the study storage" in log.read_text(), 60)
            assert log.read_text().count("error:") == 1
    finally:
        postgres.start()
    again = _resume(out, url, ranlog, 0.02)
    _out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err[-2000:]
    after = {r.number: r for r in _records(url)}
    for n, result in done_before.items():
        assert after[n].result.to_dict() == result
    trained = _trained_keys(list(after.values()))
    assert len(trained) == len(set(trained))
    assert _best(out)["chosen"]["variant"] == CONFIG_PICK


def test_two_searches_with_other_options_on_one_storage_never_mix(tmp_path: Path, postgres, anatomy: Any) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    url = postgres.new_database()
    run_search(CONFIGS["staged"], tmp_path / "a", storage=url, inputs=inputs(anatomy), objective=LoggedObjective())
    with pytest.raises(ConfigError, match="holds another search"):
        run_search(replace(CONFIGS["staged"], max_r=16), tmp_path / "b", storage=url, inputs=inputs(anatomy),
                   objective=LoggedObjective())  # fmt: skip
    with pytest.raises(ConfigError, match="another model, data or training settings"):
        run_search(replace(CONFIGS["staged"], steps=11), tmp_path / "c", storage=url, inputs=inputs(anatomy),
                   objective=LoggedObjective())  # fmt: skip


def _joined(out: Path) -> set[int]:
    """The pids of the local workers that joined (each says so first in its log)."""
    import re

    text = "".join(p.read_text() for p in (out / "workers").glob("worker-*.log")) if (out / "workers").is_dir() else ""
    return {int(pid) for pid in re.findall(r":(\d+), [^)]*\) joined", text)}


def _pid_alive(pid: int) -> bool:
    from loratune.search.study import _alive

    return _alive(pid)


def test_a_worker_from_another_machine_joins_and_its_death_is_found_by_heartbeat(tmp_path: Path, postgres) -> None:  # type: ignore[no-untyped-def]
    """`loratune worker --storage URL` joins; killed, its run is failed once its Optuna heartbeat is older
    than the grace period (no pid to look at on another machine) and requeued by Optuna's retry callback."""
    url = postgres.new_database()
    ranlog, out = tmp_path / "ran.log", tmp_path / "out"
    env = {**ENV, "LORATUNE_GRACE_S": "3", "LORATUNE_TEST_RANLOG": str(ranlog), "LORATUNE_TEST_SLEEP": "0.3"}
    proc = subprocess.Popen([sys.executable, str(DRIVER), str(out), url, "2", "staged"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    wait_for(lambda: ranlog.is_file())
    remote_env = {**env, "LORATUNE_HOST": "elsewhere", "LORATUNE_WORKER_FACTORY": f"{DRIVER}:make"}
    remote = subprocess.Popen([sys.executable, "-m", "loratune.cli.app", "worker", "--storage", url, "--index", "7"],
                              env=remote_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    victim: dict[str, Any] = {}

    trials = _Trials(url)

    def remote_is_training() -> bool:
        for t in trials():
            if t.state.name == "RUNNING" and str(t.user_attrs.get("worker", "")).startswith("elsewhere:"):
                victim.update(number=t.number, key=t.user_attrs["key"])
                return True
        return False

    wait_for(remote_is_training)
    remote.send_signal(signal.SIGKILL)
    remote.wait(timeout=30)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    trials = SearchStudy(url, fingerprint="", create=False, recover=False).study.get_trials(deepcopy=False)
    assert trials[victim["number"]].state.name == "FAIL"
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == victim["number"]]
    assert len(retried) == 1 and retried[0].state.name == "COMPLETE"  # Optuna's retry, run to the end
    assert retried[0].user_attrs["key"] == victim["key"]
    trained = _trained_keys(_records(url))
    assert len(trained) == len(set(trained))
    assert _best(out)["chosen"]["variant"] == CONFIG_PICK


def test_real_tiny_model_trials_on_two_workers(tmp_path: Path, tiny_model: Path, qa_file: Path) -> None:
    """`loratune search … --workers 2` with real training: the search's process (worker 0) and a worker
    process (which loads the model itself) each train their share; the pick is the one-worker pick."""
    from .cli_driver import __file__ as cli_driver

    def search(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        args = [
            "search", str(tiny_model), "--data", str(qa_file), "--out", str(out), "--steps", "40", "--batch-size", "2",
            "--lr-runs", "2", "--max-length", "48", "--val-examples", "4", "--max-r", "4", "--modules",
            "attention", "--lr", "5e-3", "--export", "peft", "--no-progress", *extra,
        ]  # fmt: skip
        return subprocess.run([sys.executable, cli_driver, *args], env=ENV, capture_output=True, text=True,
                              timeout=300)  # fmt: skip

    two = search(tmp_path / "two", "--workers", "2")
    assert two.returncode == 0, two.stderr[-2000:]
    logs = [p.read_text() for p in sorted((tmp_path / "two" / "workers").glob("worker-*.log"))]
    assert len(logs) == 1  # worker 1: the search's own process is worker 0
    records = read_journal(tmp_path / "two")
    trained = _trained_keys(records)
    assert len(trained) == len(set(trained)) >= 4
    by_worker = re.search(r"done, (\d+) run\(s\) trained", logs[0])
    assert by_worker is not None and 0 < int(by_worker.group(1)) < len(trained)  # each trained its share
    # --resume with workers: the journal is found, nothing trains again (and no worker needs to start)
    resume = [sys.executable, cli_driver, "search", str(tiny_model), "--out", str(tmp_path / "two"), "--resume"]
    again = subprocess.run([*resume, "--workers", "2"], env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _trained_keys(read_journal(tmp_path / "two")) == trained
    one = search(tmp_path / "one")
    assert one.returncode == 0, one.stderr[-2000:]
    assert _best(tmp_path / "two")["chosen"] == _best(tmp_path / "one")["chosen"]
    exports = [(tmp_path / d / "exports" / "peft.json").read_text() for d in ("two", "one")]
    assert exports[0] == exports[1]


def read_journal(out: Path) -> list[Any]:
    from loratune.search.storage import read_journal_records

    return read_journal_records(out / "study.journal")


def test_bad_worker_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], anatomy: Any) -> None:
    from loratune.cli.app import run

    def refused(*argv: str) -> str:
        rc = run(list(argv))
        cap = capsys.readouterr()
        lines = [ln for ln in (cap.out + cap.err).splitlines() if ln.strip()]
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
        return lines[0]

    assert "pass either --storage URL or --out DIR" in refused("worker")
    assert "--workers must be >= 1, got 0" in refused("search", "smollm2-135m", "--out", str(tmp_path / "x"),
                                                      "--workers", "0")  # fmt: skip
    assert "no study at" in refused("worker", "--storage", f"sqlite:///{tmp_path / 'empty.db'}")
    assert "no study at" in refused("worker", "--out", str(tmp_path / "nowhere"))
    assert not (tmp_path / "empty.db").exists() and not (tmp_path / "nowhere").exists()  # nothing made
    # a one-worker search keeps SQLite, which several workers must not share: refused, not silently restarted
    run_search(CONFIGS["staged"], tmp_path / "s", inputs=inputs(anatomy), objective=LoggedObjective())
    assert "runs without workers" in refused("worker", "--out", str(tmp_path / "s"))
    with pytest.raises(ConfigError, match="several workers must not share"):
        run_search(CONFIGS["staged"], tmp_path / "s", inputs=inputs(anatomy), objective=LoggedObjective(), workers=2)
    with pytest.raises(ConfigError, match="several workers must not share a SQLite study"):
        run_search(CONFIGS["staged"], tmp_path / "t", storage=f"sqlite:///{tmp_path / 't.db'}", inputs=inputs(anatomy),
                   objective=LoggedObjective(), workers=2)  # fmt: skip
