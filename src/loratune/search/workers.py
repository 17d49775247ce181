"""Many workers on one study: the study, not a process, is the unit of truth (DESIGN.md).

Everything goes through Optuna's own trial states, no queue of ours:
- **staged**: the coordinator (``run_search``) *enqueues* each run as a WAITING trial whose user attributes
  hold the run's key and config (``PooledStudy.submit``); a stage submits all its runs at once (every
  variant × the LRs its sweep surely needs) and waits for them. Workers claim WAITING trials with Optuna's
  atomic WAITING → RUNNING transition, train, ``tell``. The strategy's decisions read the same results in
  the same order as with one worker, so the pick is the same.
- **optuna**: every worker samples (``study.ask``, TPE with ``constant_liar``) and prunes by itself; the
  coordinator only enqueues the baseline, waits for ``--trials`` distinct runs and picks the knee.
- **no config runs twice**: before training, a trial writes its key, then waits while a *lower-numbered*
  RUNNING trial holds the same key (or no key yet). Trial creation is serialised per study (RDB: a row
  lock on the study; journal: one log order), so every lower trial is visible to a higher one: of two
  live trials with one key, the higher always waits, and then answers from the finished run (cache).
- **a dead worker**: its RUNNING trial is failed (a dead local pid at once; a remote one once its Optuna
  heartbeat is older than the grace period) and requeued by Optuna's stale-trial retry callback
  (``storage.RequeueDeadRun``); the next free worker runs it. Nothing finished is touched.
- **a dead coordinator**: workers keep going (optuna) or wait (staged) for ``grace_s()``; ``--resume``
  counts the live local workers and starts only the missing ones.
- **a storage that goes away**: every process stops with one line (``StorageLost``); ``--resume`` goes on.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loratune.errors import ConfigError, TrialError
from loratune.search.config import SearchConfig, study_fingerprint
from loratune.search.events import Log, RunFinished, ignore
from loratune.search.space import RunConfig, Variant
from loratune.search.storage import RequeueDeadRun, grace_s, has_heartbeat, storage_errors, storage_lost
from loratune.search.study import (
    STUDY_NAME,
    Objective,
    SearchStudy,
    TrialRecord,
    _alive,
    _heartbeat,
    _host,
    _record,
    _set_config_attrs,
)

if TYPE_CHECKING:
    import optuna

    from loratune.search.lr import LRPlan
    from loratune.search.run import SearchInputs
    from loratune.search.staged import SearchOutcome

POLL_S = 0.25
OPTIONS_ATTR = "search_options"
DIGEST_ATTR = "search_options_digest"
DONE_ATTR = "loratune:done"
COORDINATOR_ATTR = "loratune:coordinator"
WORKER_PREFIX = "loratune:worker:"
# Options that never change which runs a search makes (how it is run, what it writes at the end).
NOT_IN_DIGEST = ("train_final", "final_steps", "threads", "time_budget", "export")
# A factory (for tests and other back ends): "path/to/file.py:function" → function(config) -> (inputs, objective)
FACTORY_ENV = "LORATUNE_WORKER_FACTORY"


# -- the search a study holds --------------------------------------------------------------------------
def options_digest(config: SearchConfig) -> str:
    data = {f.name: getattr(config, f.name) for f in fields(config) if f.name not in NOT_IN_DIGEST}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def bind_options(study: SearchStudy, config: SearchConfig) -> None:
    """Keep the search's options in the study (what ``loratune worker`` reads); refuse another search's:
    two searches with different options on one storage never mix their runs."""
    digest = options_digest(config)
    attrs = study.study.user_attrs
    if attrs.get(DIGEST_ATTR) is None:
        study.study.set_user_attr(OPTIONS_ATTR, replace(config, time_budget=None).to_dict())
        study.study.set_user_attr(DIGEST_ATTR, digest)
    elif attrs[DIGEST_ATTR] != digest:
        raise ConfigError(
            "this study holds another search (other strategy, ranks, modules, trials or seed)",
            "resume it with its own options, or use another --out / storage (or --study name)",
        )


def search_fingerprint(config: SearchConfig, inputs: SearchInputs) -> str:
    """The study fingerprint of ``config`` on ``inputs``, computed as ``run_search`` computes it."""
    base_lr = config.lr or inputs.recommended_lr
    settings = config.train_settings(base_lr, inputs.compute_dtype)
    return study_fingerprint(
        model=inputs.model,
        data_digest=inputs.data_digest,
        n_train=len(inputs.train),
        n_val=len(list(inputs.val)[: config.val_examples]),
        n_reference=len(list(inputs.reference)),
        settings=settings,
    )


# -- recovery ----------------------------------------------------------------------------------------
def recover_pool(study: SearchStudy) -> list[int]:
    """Fail the RUNNING trials of dead workers and requeue their configs (Optuna's retry callback): a dead
    local pid at once, a trial nobody claimed by name after ``grace_s()``, a remote one by heartbeat."""
    import optuna
    from optuna.trial import TrialState

    storage = study._storage
    requeue = RequeueDeadRun()
    me, now, failed = _host(), time.time(), []
    for t in study.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        host, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
        dead = host == me and pid.isdigit() and not _alive(int(pid))
        started = t.datetime_start.timestamp() if t.datetime_start else now
        nameless = "worker" not in t.user_attrs and now - started > grace_s()
        if not (dead or nameless):
            continue
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                failed.append(t.number)
                requeue(study.study, storage.get_trial(t._trial_id))
        except optuna.exceptions.UpdateFinishedTrialError:
            pass
    if has_heartbeat(storage):
        before = {t.number for t in study.study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        with contextlib.suppress(optuna.exceptions.OptunaError), _quiet():  # flagged experimental
            optuna.storages.fail_stale_trials(study.study)  # requeues through the storage's callback
        after = {t.number for t in study.study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        failed += sorted(after - before)
    return sorted(set(failed))


def _sys_attrs(study: SearchStudy) -> dict[str, Any]:
    """The study's system attributes (Optuna 5 keeps them on the storage only)."""
    attrs: dict[str, Any] = study.study._storage.get_study_system_attrs(study.study._study_id)
    return attrs


def _sys_set(study: SearchStudy, key: str, value: Any) -> None:
    study.study._storage.set_study_system_attr(study.study._study_id, key, value)


def _live_workers(study: SearchStudy) -> list[str]:
    """Workers that announced themselves and are alive: a local pid that runs, a remote one seen lately."""
    me, now, live = _host(), time.time(), []
    for name, seen in _sys_attrs(study).items():
        if not name.startswith(WORKER_PREFIX):
            continue
        host, _, pid = name[len(WORKER_PREFIX) :].rpartition(":")
        if (host == me and pid.isdigit() and _alive(int(pid))) or (host != me and now - float(seen) < grace_s()):
            live.append(name[len(WORKER_PREFIX) :])
    return live


def _coordinator_alive(study: SearchStudy) -> bool:
    info = _sys_attrs(study).get(COORDINATOR_ATTR)
    if not isinstance(info, dict):
        return False
    if info.get("host") == _host():
        return _alive(int(info.get("pid", 0)))
    return bool(time.time() - float(info.get("time", 0)) < grace_s())


# -- the coordinator's study -------------------------------------------------------------------------
class PooledStudy(SearchStudy):
    """The coordinator's study: ``run`` hands a run to the workers (a WAITING trial) and waits for it;
    ``submit`` hands it over without waiting (a stage's runs go out together)."""

    pool: WorkerPool | None = None
    _submitted: set[str]
    url: str = ""
    name: str = STUDY_NAME

    def submit(self, config: RunConfig) -> None:
        key = config.key(self.fingerprint)
        if key in self._submitted or self.lookup(key) is not None:
            return
        self._submitted.add(key)  # a live trial of an earlier sitting is the run too
        if self.pool is not None:
            self.pool.ensure_started(self)  # only when something is left to run (a resume may have none)
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
        rec = self.wait_for(key, config)
        self._cache[key] = rec
        return rec

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

    def wait_for(self, key: str, config: RunConfig) -> TrialRecord:
        """The finished trial that ran ``key``, once a worker has told it; a config whose trials all ended
        without a result (its worker was stopped) goes out again, up to ``MAX_RETRY`` times."""
        from optuna.trial import TrialState

        from loratune.search.storage import MAX_RETRY

        orphaned_since: float | None = None
        last_check = 0.0
        while True:
            mine = [t for t in self.study.get_trials(deepcopy=False) if t.user_attrs.get("key") == key]
            done = [t for t in mine if t.state.is_finished() and "result" in t.user_attrs]
            if done:
                return _record(done[0])
            if any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in mine):
                orphaned_since = None
            elif orphaned_since is None:
                orphaned_since = time.monotonic()
            elif time.monotonic() - orphaned_since > 2.0:  # settled: no retry callback is on its way
                if len(mine) > MAX_RETRY:
                    raise TrialError(
                        f"run {config.variant.label()} lr {config.learning_rate:g} stopped {len(mine)} times",
                        "see the worker logs; fix the cause and --resume",
                    )
                self.study.enqueue_trial({}, user_attrs=_config_attrs(config, key))
                orphaned_since = None
            if time.monotonic() - last_check > 1.0:
                last_check = time.monotonic()
                self.beat()
                recover_pool(self)
                if self.pool is not None:
                    self.pool.check(self)
            time.sleep(POLL_S)

    def beat(self) -> None:
        _sys_set(self, COORDINATOR_ATTR, {"host": _host(), "pid": os.getpid(), "time": time.time()})


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
    study = PooledStudy(storage, fingerprint=fp, name=name, sampler=sampler, pruner=pruner, recover=False)
    study.url, study.name, study._submitted = url, name, set()
    bind_options(study, config)
    study.recovered = recover_pool(study)
    _sys_set(study, DONE_ATTR, False)
    study.beat()
    return study


def pooled_optuna(study: PooledStudy, opt: Any, *, baseline: Variant | None, log: Log = ignore) -> SearchOutcome:
    """The optuna strategy with the workers sampling: enqueue the baseline, wait for ``n_trials`` distinct
    finished runs (and no run in flight), pick the knee."""
    from optuna.trial import TrialState

    from loratune.search.knee import choose, score_variants
    from loratune.search.optuna_strategy import baseline_params
    from loratune.search.staged import SearchOutcome, StageLog

    if baseline is not None and not study.records():
        study.study.enqueue_trial(baseline_params(baseline, opt), skip_if_exists=True)
    if study.pool is not None and _distinct(study.finished()) < opt.n_trials:
        study.pool.ensure_started(study)
    seen: set[int] = set()
    last_check = 0.0
    started = time.perf_counter()
    while True:
        finished = study.finished()
        for rec in finished:
            if rec.number not in seen:
                seen.add(rec.number)
                log(RunFinished(rec, time.perf_counter() - started, max(0, opt.n_trials - _distinct(finished))))
        live = study.study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
        if _distinct(finished) >= opt.n_trials and not live:
            break
        if time.monotonic() - last_check > 1.0:
            last_check = time.monotonic()
            study.beat()
            recover_pool(study)
            if study.pool is not None:
                study.pool.check(study)
        time.sleep(POLL_S)
    scores = score_variants(study.finished())
    choice = choose(scores, cost=opt.cost, tolerance=opt.tolerance, max_forgetting=opt.max_forgetting)
    tried = [s.variant for s in scores]
    return SearchOutcome("optuna", [StageLog("optuna", tried, choice.chosen.variant, choice.reason())], choice)


def _distinct(records: list[TrialRecord]) -> int:
    return sum(1 for r in records if r.cached_study != "self")


def pooled_run(
    config: SearchConfig,
    study: SearchStudy,
    out: Path,
    workers: int,
    staged: Callable[[], SearchOutcome],
    baseline: Variant,
    log: Log,
    *,
    device: str = "cpu",
    factory: str | None = None,
) -> SearchOutcome:
    """``run_search``'s strategy step with ``workers`` local worker processes on the study."""
    from loratune.search.run import optuna_options

    assert isinstance(study, PooledStudy)
    pool = WorkerPool(study.url, study.name, workers, Path(out) / "workers", threads=config.threads, device=device,
                      factory=factory or os.environ.get(FACTORY_ENV))  # fmt: skip
    try:
        with running_pool(study, pool):
            if config.strategy == "optuna":
                return pooled_optuna(study, optuna_options(config), baseline=baseline, log=log)
            return staged()
    except storage_errors() as e:
        raise storage_lost(study.url, e) from None


# -- local worker processes --------------------------------------------------------------------------
def worker_devices(n: int, device: str = "cpu") -> list[str]:
    """Where each local worker trains. The hook for GPUs: ``cuda`` puts worker i on ``cuda:i`` (the
    trial runner does not take a device yet; workers pass it on as ``LORATUNE_DEVICE``)."""
    if device == "cuda":
        return [f"cuda:{i}" for i in range(n)]
    return [device] * n


def worker_threads(n: int, threads: int | None) -> int:
    """CPU threads per local worker: the cores shared out (``--threads`` wins)."""
    return threads or max(1, (os.cpu_count() or 1) // max(1, n))


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

    def ensure_started(self, study: SearchStudy) -> None:
        if self.procs is None:
            self.start(study)

    def start(self, study: SearchStudy) -> int:
        """Start the workers still missing (a resume finds the old ones alive); returns how many started."""
        live = [w for w in _live_workers(study) if w.startswith(_host() + ":")]
        missing = max(0, self.count - len(live))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        devices = worker_devices(self.count, self.device)
        self.procs = []
        for i in range(missing):
            index = len(live) + i
            cmd = [
                sys.executable, "-m", "loratune.search.workers", "--storage", self.storage, "--study",
                self.study_name, "--index", str(index), "--threads", str(worker_threads(self.count, self.threads)),
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

    def stop(self, timeout: float = 30) -> None:
        for p in self.procs or []:
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
        pool.stop()
    finally:
        study.pool = None


# -- a worker ----------------------------------------------------------------------------------------
class WorkerStudy(SearchStudy):
    """A worker's study: a run waits while a lower-numbered live trial holds its key (see the header)."""

    def ask(self) -> optuna.trial.Trial:
        trial = super().ask()
        self._first_beat(trial._trial_id)
        return trial

    def _first_beat(self, trial_id: int) -> None:
        """At once: a trial claimed by a remote worker that dies before training must still go stale."""
        storage: Any = self._storage
        if has_heartbeat(storage):
            storage.record_heartbeat(trial_id)

    def run(
        self, config: RunConfig, objective: Objective, *, trial: optuna.trial.Trial | None = None, prune: bool = False
    ) -> TrialRecord:
        trial = trial or self.ask()
        key = config.key(self.fingerprint)
        _set_config_attrs(trial, config, key)  # committed before looking: see the header
        with _heartbeat(self._storage, trial._trial_id):
            self._wait_for_lower(trial._trial_id, key)
        return super().run(config, objective, trial=trial, prune=prune)

    def _wait_for_lower(self, me: int, key: str) -> None:
        from optuna.trial import TrialState

        last = 0.0
        while True:
            running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if not any(t._trial_id < me and t.user_attrs.get("key") in (None, key) for t in running):
                return
            if time.monotonic() - last > 1.0:
                last = time.monotonic()
                recover_pool(self)
            time.sleep(POLL_S)

    def claim(self) -> optuna.trial.Trial | None:
        """A WAITING trial, taken with Optuna's atomic WAITING → RUNNING (what ``ask`` does first)."""
        import optuna
        from optuna.trial import TrialState

        for t in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            try:
                if not self._storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            self._first_beat(t._trial_id)
            trial = optuna.Trial(self.study, t._trial_id)
            trial.set_user_attr("worker", f"{_host()}:{os.getpid()}")
            return trial
        return None


def load_factory(spec: str) -> Callable[[SearchConfig], tuple[SearchInputs, Objective]]:
    path, _, name = spec.rpartition(":")
    module_spec = importlib.util.spec_from_file_location("loratune_worker_factory", path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"cannot load the worker factory {spec!r}", "use path/to/file.py:function")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    factory: Callable[[SearchConfig], tuple[SearchInputs, Objective]] = getattr(module, name)
    return factory


def run_worker(
    storage: str,
    study_name: str = STUDY_NAME,
    *,
    index: int = 0,
    threads: int | None = None,
    device: str = "cpu",
    say: Callable[[str], None] = print,
) -> int:
    """Join the search in ``storage`` and run its trials until it is done; returns the runs trained.
    Raises ``StorageLost`` (one line) when the storage goes away."""
    try:
        return _run_worker(storage, study_name, index=index, threads=threads, device=device, say=say)
    except storage_errors() as e:
        raise storage_lost(storage, e) from None


def _run_worker(storage: str, study_name: str, *, index: int, threads: int | None, device: str,
                say: Callable[[str], None]) -> int:  # fmt: skip
    probe = SearchStudy(storage, fingerprint="", name=study_name, create=False, recover=False)
    deadline = time.monotonic() + grace_s()
    while OPTIONS_ATTR not in probe.study.user_attrs:
        if time.monotonic() > deadline:
            raise ConfigError(f"study {study_name!r} holds no search options", "start it with `loratune search`")
        time.sleep(POLL_S)
    config = SearchConfig.from_dict(probe.study.user_attrs[OPTIONS_ATTR], source=f"study {study_name!r}")
    config = replace(config, threads=threads or config.threads)
    os.environ.setdefault("LORATUNE_DEVICE", device)
    factory = os.environ.get(FACTORY_ENV)
    if factory:
        inputs, objective = load_factory(factory)(config)
    else:
        inputs, objective = _real_objective(config)
    fp = search_fingerprint(config, inputs)
    if fp != probe.study.user_attrs.get("fingerprint"):
        raise ConfigError(
            "this worker would train differently from the search (other loratune code, model or data)",
            "run the worker with the same loratune version, model and data files as the search",
        )
    sampler = pruner = None
    opt = None
    if config.strategy == "optuna":
        from loratune.search.run import optuna_options

        sampler, pruner = _worker_sampler(config, index)
        opt = optuna_options(config)
    study = WorkerStudy(storage, fingerprint=fp, name=study_name, sampler=sampler, pruner=pruner, create=False,
                        recover=False)  # fmt: skip
    me = f"{WORKER_PREFIX}{_host()}:{os.getpid()}"
    say(f"worker {index} ({_host()}:{os.getpid()}, {device}) joined study {study_name!r}: {config.strategy} search")
    trained, asked, idle_since = 0, 0, time.monotonic()
    from loratune.search.baseline import plan_for

    plan = plan_for(inputs.baseline, config.lr or inputs.recommended_lr, config.lr_runs)
    last_beat = 0.0
    while True:
        if time.monotonic() - last_beat > 1.0:
            last_beat = time.monotonic()
            _sys_set(study, me, time.time())
            recover_pool(study)
        if _sys_attrs(study).get(DONE_ATTR):
            break
        trial, run = _next_run(study, opt, plan, asked)
        if trial is None or run is None:
            if opt is not None and asked >= 4 * opt.n_trials:
                break
            if _coordinator_alive(study):
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > grace_s():
                say(f"worker {index}: no coordinator for {grace_s()} s and nothing to run; stopping")
                break
            time.sleep(POLL_S)
            continue
        asked += 1
        rec = study.run(run, objective, trial=trial, prune=opt is not None and opt.pruner != "none")
        idle_since = time.monotonic()
        if rec.cached_study is None:
            trained += 1
        say(f"worker {index}: trial {rec.number} {run.variant.label()} lr {run.learning_rate:g} {rec.state.lower()}")
    with contextlib.suppress(Exception):
        _sys_set(study, me, 0.0)
    say(f"worker {index}: done, {trained} run(s) trained")
    return trained


def _next_run(study: WorkerStudy, opt: Any, plan: LRPlan, asked: int) -> tuple[Any, RunConfig | None]:
    """The next trial to run: a queued one (staged), or a sampled one while runs are missing (optuna)."""
    if opt is None:
        trial = study.claim()
        if trial is None:
            return None, None
        ua = trial.user_attrs
        return trial, RunConfig(Variant.from_dict(ua["variant"]), float(ua["learning_rate"]), stage=ua.get("stage", ""))
    from optuna.trial import TrialState

    from loratune.search.optuna_strategy import _suggest

    finished = study.finished()
    running = study.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    waiting = study.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    if asked >= 4 * opt.n_trials or (not waiting and _distinct(finished) + len(running) >= opt.n_trials):
        return None, None
    trial = study.ask()
    variant, lr = _suggest(trial, opt, plan)
    return trial, RunConfig(variant, lr, stage="optuna")


def _worker_sampler(config: SearchConfig, index: int) -> tuple[Any, Any]:
    """TPE seeded per worker (the same seed would sample the same configs in every worker), with the
    constant liar (running trials count as bad guesses, so workers spread out); the search's pruner."""
    import optuna

    from loratune.search.optuna_strategy import make_sampler_and_pruner
    from loratune.search.run import optuna_options

    opt = optuna_options(config)
    _, pruner = make_sampler_and_pruner(opt, min_resource=max(1, config.steps // 2))
    with _quiet():  # constant_liar is flagged experimental
        sampler = optuna.samplers.TPESampler(
            seed=opt.seed + 1000 * index, n_startup_trials=max(4, opt.n_trials // 4), constant_liar=True
        )
    return sampler, pruner


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _real_objective(config: SearchConfig) -> tuple[SearchInputs, Objective]:
    from loratune.search.objective import RunnerObjective
    from loratune.search.run import load_inputs

    inputs = load_inputs(config)
    base_lr = config.lr or inputs.recommended_lr
    settings = config.train_settings(base_lr, inputs.compute_dtype)
    val = list(inputs.val)[: config.val_examples]
    objective = RunnerObjective(inputs.runner, inputs.anatomy, settings, inputs.train, val, list(inputs.reference),
                                progress=False)  # fmt: skip
    return inputs, objective


def main(argv: list[str] | None = None) -> int:
    """``python -m loratune.search.workers --storage URL --study NAME``: what ``--workers`` starts."""
    import argparse

    parser = argparse.ArgumentParser(prog="loratune-worker")
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", default=STUDY_NAME)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    from loratune.errors import LoratuneError

    try:
        from loratune.search.run import _optuna_verbosity

        with _optuna_verbosity(True):
            run_worker(args.storage, args.study, index=args.index, threads=args.threads, device=args.device,
                       say=lambda s: print(s, flush=True))  # fmt: skip
    except LoratuneError as e:
        print(f"error: {e.one_line()}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
