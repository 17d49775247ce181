"""The coordinator's side of many workers (``run_search(workers=N)``): its study hands runs to the workers
as WAITING trials and waits for them (staged, and the fidelity ladder's rungs in both strategies:
``open_rung_study``), or waits for the workers' own trials (optuna); the local worker processes it starts.
How the pieces fit: ``search.workers``'s header.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from loratune.errors import ConfigError, TrialError
from loratune.search.config import SearchConfig
from loratune.search.events import Log, WorkersStarted, ignore
from loratune.search.poolstate import (
    AHEAD_SUFFIX,
    COORDINATOR_ATTR,
    DONE_ATTR,
    FACTORY_ENV,
    POLL_S,
    RUNGS_ATTR,
    WANTED_ATTR,
    _live_workers,
    _sys_attrs,
    _sys_set,
    bind_options,
    recover_pool,
)
from loratune.search.space import RunConfig, Variant
from loratune.search.storage import heartbeat_s, storage_errors, storage_lost
from loratune.search.study import STUDY_NAME, Objective, SearchStudy, TrialRecord, _host, _record, beating

if TYPE_CHECKING:
    import optuna

    from loratune.search.staged import SearchOutcome
    from loratune.search.workers import WorkerStudy


# -- the coordinator's study -------------------------------------------------------------------------
class PooledStudy(SearchStudy):
    """The coordinator's study: ``run`` hands a run to the workers (a WAITING trial) and waits for it;
    ``submit`` hands it over without waiting (a stage's runs go out together)."""

    pool: WorkerPool | None = None
    _submitted: set[str]
    _wanted: set[str]  # keys tried ahead (in ``ahead``) that a stage may still ask for
    _sure: set[str]  # keys tried ahead that the next stage asks for whatever happens (the coordinator's own)
    ahead: SearchStudy | None = None
    url: str = ""
    name: str = STUDY_NAME
    mine: WorkerStudy | None = None  # the coordinator's worker view: it trains queued runs while it waits
    mine_ahead: WorkerStudy | None = None  # … and runs tried ahead, when nothing of the search's is queued
    parent: PooledStudy | None = None  # a ladder rung's study: the search's, which holds the pool's state

    @property
    def root(self) -> PooledStudy:
        """The search's own study: who is alive (workers, the coordinator) is kept there."""
        return self.parent or self

    def submit(self, config: RunConfig) -> None:
        key = config.key(self.fingerprint)
        if key in self._submitted or self.lookup(key) is not None:
            return
        self._submitted.add(key)  # a live trial of an earlier sitting is the run too
        if self._ahead_has(key):  # tried ahead: ``run`` adopts it
            return
        if self.pool is not None:
            self.pool.ensure_started(self.root)  # only when something is left to run (a resume may have none)
        if not self._live(key):
            self.study.enqueue_trial({}, user_attrs=_config_attrs(config, key))

    def run(
        self, config: RunConfig, objective: Objective, *, trial: optuna.trial.Trial | None = None, prune: bool = False
    ) -> TrialRecord:
        key = config.key(self.fingerprint)
        found = self.lookup(key, accept_pruned=prune)
        if found is not None and found[0].result is not None:
            if found[1] and key in self._submitted:  # handed out ahead by this search: it is the run itself
                return found[0]
            return self._record_cache_hit(config, key, found[0], found[1])
        self.submit(config)
        if self.ahead is not None and self._ahead_has(key):
            self._want(key)  # asked for now: a retry of it there must be taken up too
            rec = self._adopt(config, key, self.wait_for(key, config, self.ahead, objective))
        else:
            rec = self.wait_for(key, config, objective=objective)
        self._cache[key] = rec
        return rec

    # -- runs tried ahead: a side study, so this one holds exactly what one worker would have run --------
    def speculate(self, config: RunConfig, *, sure: bool = False) -> None:
        """Try ``config`` ahead of need when a worker would otherwise idle (``sure``: queue it now, the next
        stage is certain to ask for it); invisible unless adopted."""
        if self.ahead is None or self.pool is None:
            return
        key = config.key(self.fingerprint)
        if key in self._submitted or self.lookup(key) is not None or self._live(key) or self._ahead_has(key):
            return
        if not sure and not self._a_worker_would_idle():
            return  # a guess only for a worker process that has nothing else to do
        if sure:
            self._sure.add(key)
        self._want(key)
        self.pool.ensure_started(self.root)
        self.ahead.study.enqueue_trial({}, user_attrs=_config_attrs(config, key))

    def settle(self) -> None:
        """The stage is decided: runs tried ahead and not yet started are not wanted any more."""
        self._sure.clear()
        if self.ahead is not None and self._wanted:
            self._wanted.clear()
            _sys_set(self.ahead, WANTED_ATTR, [])

    def _a_worker_would_idle(self) -> bool:
        """Whether a worker process would have nothing to train: fewer runs queued or training (the search's,
        and the wanted ones tried ahead) than processes, counting the queued run the coordinator takes itself
        when it trains. Never the coordinator: a guess holds up the stage whose result it decides on, and
        measured, a guess queued for it was taken by a worker just as the stage moved on (bench/scale_out.py)."""
        from optuna.trial import TrialState

        assert self.pool is not None
        live = self.study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
        demand = len(live)
        if self.ahead is not None and self._wanted:
            ahead = self.ahead.study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
            demand += sum(t.user_attrs.get("key") in self._wanted for t in ahead)
        if self.mine is not None and any(t.state == TrialState.WAITING for t in live):
            demand -= 1  # the coordinator, deciding now, trains one of them next
        return demand < self.pool.count

    def _ahead_has(self, key: str) -> bool:
        """Whether the side study has (or is running) ``key``; one still queued there is wanted again."""
        from optuna.trial import TrialState

        if self.ahead is None:
            return False
        if key in self._wanted or self.ahead.lookup(key) is not None:
            return True
        states = (TrialState.WAITING, TrialState.RUNNING)
        live = [t for t in self.ahead.study.get_trials(deepcopy=False, states=states) if t.user_attrs.get("key") == key]
        if live:
            self._want(key)
        return bool(live)

    def _want(self, key: str) -> None:
        if self.ahead is not None and key not in self._wanted:
            self._wanted.add(key)
            _sys_set(self.ahead, WANTED_ATTR, sorted(self._wanted))

    def _adopt(self, config: RunConfig, key: str, ran: TrialRecord) -> TrialRecord:
        """The run tried ahead, now asked for: recorded in this study as the run it is (trained here)."""
        import optuna
        from optuna.trial import TrialState

        result = ran.result
        assert result is not None
        attrs = {**_config_attrs(config, key), "worker": f"ahead:{ran.number}", "result": result.to_dict()}
        loss = result.val_loss_after
        if result.status == "ok" and loss is not None and math.isfinite(loss):
            frozen = optuna.trial.create_trial(state=TrialState.COMPLETE, value=loss, user_attrs=attrs)
        else:
            frozen = optuna.trial.create_trial(state=TrialState.FAIL, user_attrs=attrs)
        self.study.add_trial(frozen)
        for t in reversed(self.study.get_trials(deepcopy=False)):
            if t.user_attrs.get("key") == key and t.user_attrs.get("worker") == attrs["worker"]:
                return _record(t)
        raise AssertionError("the adopted run just added is missing")

    def _live(self, key: str) -> bool:
        from optuna.trial import TrialState

        live = (TrialState.WAITING, TrialState.RUNNING)
        return any(t.user_attrs.get("key") == key for t in self.study.get_trials(deepcopy=False, states=live))

    def _record_cache_hit(self, config: RunConfig, key: str, hit: TrialRecord, mine: bool) -> TrialRecord:
        """A finished trial pointing at its source; added directly, so it never takes a queued trial."""
        import optuna
        from optuna.trial import TrialState

        result = hit.result
        assert result is not None
        attrs = {
            **_config_attrs(config, key),
            "worker": f"{_host()}:{os.getpid()}",
            "cached_from": hit.number,
            "cached_study": "self" if mine else "other",
            "result": result.to_dict(),
        }
        loss = result.val_loss_after
        if result.status == "ok" and loss is not None and math.isfinite(loss):
            frozen = optuna.trial.create_trial(state=TrialState.COMPLETE, value=loss, user_attrs=attrs)
        else:
            state = TrialState.PRUNED if result.status == "pruned" else TrialState.FAIL
            frozen = optuna.trial.create_trial(state=state, user_attrs=attrs)
        self.study.add_trial(frozen)
        return _last_with(self, key, attrs)

    def first_finished(self, configs: list[RunConfig], objective: Objective | None = None) -> RunConfig:
        """The first of ``configs`` (all handed out) whose run has finished, here or tried ahead — training
        queued runs meanwhile, like :meth:`wait_for`, which waits on the earliest of them with the same
        care for runs whose worker died."""
        keys = [(c, c.key(self.fingerprint)) for c in configs]

        def ready() -> RunConfig | None:
            for c, key in keys:
                found = self.lookup(key)
                if found is not None and found[0].result is not None:
                    return c
                if self.ahead is not None and key in self._wanted:
                    ahead = self.ahead.lookup(key)
                    if ahead is not None and ahead[0].result is not None:
                        return c
            return None

        first, key = keys[0]
        where = self.ahead if self._ahead_has(key) else None
        self.wait_for(key, first, where, objective, until=lambda: ready() is not None)
        done = ready()
        assert done is not None  # wait_for returns once the first has finished, or any has
        return done

    @overload
    def wait_for(
        self, key: str, config: RunConfig, where: SearchStudy | None = ..., objective: Objective | None = ...,
        until: None = ...,
    ) -> TrialRecord: ...  # fmt: skip

    @overload
    def wait_for(
        self, key: str, config: RunConfig, where: SearchStudy | None, objective: Objective | None,
        until: Callable[[], bool],
    ) -> TrialRecord | None: ...  # fmt: skip

    def wait_for(
        self,
        key: str,
        config: RunConfig,
        where: SearchStudy | None = None,
        objective: Objective | None = None,
        until: Callable[[], bool] | None = None,
    ) -> TrialRecord | None:
        """The finished trial that ran ``key`` (in this study, or ``where``), once a worker has told it; a
        config whose trials all ended without a result (its worker was stopped) goes out again. With
        ``objective`` and ``mine``, the coordinator trains queued runs of this study itself meanwhile.
        ``until``: also stop (returning None) as soon as it says so."""
        from optuna.trial import TrialState

        from loratune.search.storage import MAX_RETRY

        target = where or self
        orphaned_since: float | None = None
        last_check = 0.0
        while True:
            mine = [t for t in target.study.get_trials(deepcopy=False) if t.user_attrs.get("key") == key]
            done = [t for t in mine if t.state.is_finished() and "result" in t.user_attrs]
            if done:
                return _record(done[0])
            if until is not None and until():
                return None
            if objective is not None and (
                self._train(self.mine, objective)
                or self._train(self.mine_ahead, objective, only=self._sure & self._wanted)
            ):
                continue  # fmt: skip
            if any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in mine):
                orphaned_since = None
            elif orphaned_since is None:
                orphaned_since = time.monotonic()
            elif time.monotonic() - orphaned_since > 2.0:  # settled: no retry callback is on its way
                if len(mine) > MAX_RETRY + 2:  # a worker's own retries, and a Ctrl-C or two
                    raise TrialError(
                        f"run {config.variant.label()} lr {config.learning_rate:g} stopped {len(mine)} times",
                        "see the worker logs; fix the cause and --resume",
                    )
                target.study.enqueue_trial({}, user_attrs=_config_attrs(config, key))
                orphaned_since = None
            if time.monotonic() - last_check > 1.0:
                last_check = time.monotonic()
                self.beat()
                recover_pool(self)
                if self.ahead is not None:
                    recover_pool(self.ahead)
                if self.pool is not None and self.mine is None:  # a coordinator that trains is a worker left
                    self.pool.check(self.root)
            time.sleep(POLL_S)

    def _train(self, view: WorkerStudy | None, objective: Objective, only: set[str] | None = None) -> bool:
        """Claim one queued run of ``view`` (the search's study, or runs tried ahead: only the *sure* ones
        there — while the coordinator trains it decides nothing, so a guess would hold the stage up) and
        train it here, as a worker would; False if there is none."""
        if view is None or (only is not None and not only):
            return False
        from loratune.search.workers import queued_config

        trial = view.claim(only=only)
        if trial is None:
            return False
        view.run(queued_config(trial), objective, trial=trial)
        return True

    _last_beat: float = -math.inf

    def beat(self) -> None:
        """Say the coordinator is alive (once per heartbeat interval: the journal keeps every write)."""
        if time.monotonic() - self._last_beat >= heartbeat_s():
            self._last_beat = time.monotonic()
            _sys_set(self.root, COORDINATOR_ATTR, {"host": _host(), "pid": os.getpid(), "time": time.time()})


def _last_with(study: SearchStudy, key: str, attrs: dict[str, Any]) -> TrialRecord:
    for t in reversed(study.study.get_trials(deepcopy=False)):
        if t.user_attrs.get("key") == key and t.user_attrs.get("cached_from") == attrs["cached_from"]:
            return _record(t)
    raise AssertionError("the cache record just added is missing")


def _config_attrs(config: RunConfig, key: str) -> dict[str, Any]:
    return {
        "key": key,
        "variant": config.variant.to_dict(),
        "learning_rate": config.learning_rate,
        "stage": config.stage,
    }


def open_pooled_study(storage: Any, url: str, fp: str, config: SearchConfig, *, sampler: Any = None,
                      pruner: Any = None, name: str = STUDY_NAME) -> PooledStudy:  # fmt: skip
    """The coordinator's study at ``storage`` (a URL or an opened storage; ``url`` is what workers open)."""
    if url.lower().startswith("sqlite"):
        raise ConfigError(
            "several workers must not share a SQLite study (Optuna does not support it: claims can fail with "
            "'database is locked')",
            "drop --storage (the workers then share <out>/study.journal), or use a server such as postgresql://…",
        )
    study = _pooled(PooledStudy(storage, fingerprint=fp, name=name, sampler=sampler, pruner=pruner, recover=False),
                    url, name)  # fmt: skip
    if config.strategy == "staged":
        study.ahead = SearchStudy(storage, fingerprint=fp, name=name + AHEAD_SUFFIX, recover=False)
        _sys_set(study.ahead, WANTED_ATTR, [])
    bind_options(study, config)
    study.recovered = recover_pool(study)
    _sys_set(study, DONE_ATTR, False)
    study.beat()
    return study


def open_rung_study(main: PooledStudy, name: str, fingerprint: str, steps: int) -> PooledStudy:
    """A fidelity-ladder rung's study beside the search's: its runs go out to the workers as a stage's do
    (announced in ``RUNGS_ATTR``, so workers train them at the rung's length); the coordinator trains
    queued ones too when it is worker 0."""
    from loratune.search.workers import WorkerStudy

    rung = _pooled(PooledStudy(main._storage, fingerprint=fingerprint, name=name, recover=False), main.url, name)
    rung.pool, rung.parent = main.pool, main
    if main.pool is not None and main.pool.first_index > 0:  # the coordinator trains as worker 0
        rung.mine = WorkerStudy(main._storage, fingerprint=fingerprint, name=name, create=False, recover=False)
    rungs = list(_sys_attrs(main).get(RUNGS_ATTR) or [])
    if not any(r.get("name") == name for r in rungs):
        _sys_set(main, RUNGS_ATTR, [*rungs, {"name": name, "steps": steps, "fingerprint": fingerprint}])
    recover_pool(rung)
    return rung


def _pooled(study: PooledStudy, url: str, name: str) -> PooledStudy:
    """A fresh PooledStudy's own state: where workers open it, and nothing handed out yet."""
    study.url, study.name, study._submitted, study._wanted, study._sure = url, name, set(), set(), set()
    return study


def pooled_run(
    config: SearchConfig,
    study: SearchStudy,
    out: Path,
    workers: int,
    staged: Callable[[], SearchOutcome],
    baseline: Variant,
    log: Log,
    *,
    factory: str | None = None,
    objective: Objective | None = None,
    base_lr: float | None = None,
    then: Callable[[SearchOutcome], SearchOutcome] | None = None,
) -> SearchOutcome:
    """``run_search``'s strategy step with ``workers`` training on the study: given ``objective``, this
    process as worker 0 (it has the model loaded: measured, a worker process needs 4–8 s before its first
    run) and ``workers − 1`` local worker processes; without it, ``workers`` processes. ``then`` (the
    fidelity ladder) runs on the strategy's outcome while the workers are still there to serve its rungs."""
    from loratune.search.baseline import plan_for
    from loratune.search.pool_optuna import pooled_optuna
    from loratune.search.workers import WorkerStudy

    assert isinstance(study, PooledStudy)
    here = int(objective is not None)  # the coordinator trains too
    pool = WorkerPool(study.url, study.name, workers - here, Path(out) / "workers", threads=config.threads,
                      device=config.device, factory=factory or os.environ.get(FACTORY_ENV), log=log,
                      first_index=here)  # fmt: skip
    try:
        with running_pool(study, pool):
            if config.strategy == "optuna":
                plan = plan_for(baseline, base_lr or 0.0, config.lr_runs) if here else None
                outcome = pooled_optuna(study, config, baseline=baseline, plan=plan, objective=objective, log=log)
                if then is None:
                    return outcome
                with beating(study.beat, "loratune-coordinator-beat"):
                    return then(outcome)
            if here:  # staged: while a stage waits for its runs, the coordinator trains queued ones
                study.mine = WorkerStudy(study._storage, fingerprint=study.fingerprint, name=study.name,
                                         create=False, recover=False)  # fmt: skip
                if study.ahead is not None:
                    study.mine_ahead = WorkerStudy(study._storage, fingerprint=study.fingerprint,
                                                   name=study.name + AHEAD_SUFFIX, create=False,
                                                   recover=False)  # fmt: skip
            try:
                with beating(study.beat, "loratune-coordinator-beat"):  # alive to remote workers while it trains
                    outcome = staged()
                    return then(outcome) if then is not None else outcome
            finally:
                study.mine = study.mine_ahead = None
    except storage_errors() as e:
        raise storage_lost(study.url, e) from None


# -- local worker processes --------------------------------------------------------------------------
def worker_devices(n: int, device: str = "cpu") -> list[str]:
    """Where each local worker trains: ``cuda`` (or ``auto`` on a machine with GPUs) puts worker i on
    ``cuda:i`` (round robin past the last GPU); ``cpu`` or one named GPU (``cuda:3``) is every worker's."""
    if device in ("cuda", "auto"):
        count = _cuda_devices()
        if count:
            return [f"cuda:{i % count}" for i in range(n)]
        return ["cpu" if device == "auto" else device] * n
    return [device] * n


def _cuda_devices() -> int:
    try:
        import torch

        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:  # no torch build with CUDA: no GPUs
        return 0


def worker_threads(n: int, threads: int | None) -> int:
    """CPU threads per local worker: the cores shared out (``--threads`` wins)."""
    return threads or max(1, (os.cpu_count() or 1) // max(1, n))


@contextlib.contextmanager
def threads_of_a_worker(runner: Any, workers: int, threads: int | None) -> Iterator[None]:
    """While ``workers`` > 1, this process's runner trains (or is timed) with one worker's share of the CPU
    threads (``worker_threads``, what each worker process gets); as before afterwards."""
    if workers <= 1 or runner is None or not hasattr(runner, "threads"):
        yield
        return
    before = runner.threads
    runner.threads = worker_threads(workers, threads)
    try:
        yield
    finally:
        runner.threads = before


@dataclass
class WorkerPool:
    """The local worker processes a coordinator started (more may join from other machines)."""

    storage: str
    study_name: str
    count: int
    log_dir: Path
    threads: int | None = None
    device: str = "cpu"
    factory: str | None = None
    procs: list[subprocess.Popen[bytes]] | None = None
    log: Log = ignore
    first_index: int = 0  # 1 when the coordinator trains as worker 0

    @property
    def training(self) -> int:
        """Processes that train: the workers, and the coordinator when it is worker 0 (threads, devices)."""
        return self.first_index + self.count

    def ensure_started(self, study: SearchStudy) -> None:
        if self.procs is None:
            started = self.start(study)
            self.log(WorkersStarted(started, self.count - started, self.log_dir, here=self.first_index > 0))

    def start(self, study: SearchStudy) -> int:
        """Start the workers still missing (a resume finds the old ones alive); returns how many started."""
        live = [w for w in _live_workers(study) if w.startswith(_host() + ":")]
        missing = max(0, self.count - len(live))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        devices = worker_devices(self.training, self.device)
        self.procs = []
        for i in range(missing):
            index = self.first_index + len(live) + i
            cmd = [
                sys.executable, "-m", "loratune.search.workers", "--storage", self.storage, "--study",
                self.study_name, "--index", str(index), "--threads", str(worker_threads(self.training, self.threads)),
                "--device", devices[index % len(devices)],
            ]  # fmt: skip
            env = dict(os.environ)
            if self.factory:
                env[FACTORY_ENV] = self.factory
            log = (self.log_dir / f"worker-{index}.log").open("ab")
            self.procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
            log.close()
        return missing

    def check(self, study: SearchStudy) -> None:
        """Raise when no worker is left to run anything: the last line a worker wrote says why."""
        if self.procs is None or any(p.poll() is None for p in self.procs) or _live_workers(study):
            return
        last = ""
        for path in sorted(self.log_dir.glob("worker-*.log")):
            lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()]
            last = lines[-1] if lines else last
        raise TrialError("every worker stopped" + (f": {last[:300]}" if last else ""), "see the worker logs")

    def stop(self, study: SearchStudy | None = None, timeout: float = 30) -> None:
        """Wait for the workers to leave (the search is done). One that has not joined ``study`` yet (still
        loading its model) is stopped at once: it holds no trial, and once it sees the search done it
        would claim none (it reads ``DONE_ATTR`` after announcing itself, and that was set before this)."""
        joined = set(_live_workers(study)) if study is not None else None
        for p in self.procs or []:
            if joined is not None and p.poll() is None and f"{_host()}:{p.pid}" not in joined:
                p.terminate()
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.terminate()


@contextlib.contextmanager
def running_pool(study: PooledStudy, pool: WorkerPool) -> Iterator[WorkerPool]:
    """Start the workers once there is work, and tell them the search is done at the end (they exit)."""
    study.pool = pool
    try:
        yield pool
        _sys_set(study, DONE_ATTR, True)
        pool.stop(study)
    finally:
        study.pool = None
