"""Many workers on one study: the study, not a process, is the unit of truth (DESIGN.md). This module is a
worker's side (``loratune worker``, ``python -m loratune.search.workers``); ``search.pool`` is the
coordinator's, ``search.poolstate`` what both keep in the study (the search's options, who is alive,
recovery).

Everything goes through Optuna's own trial states, no queue of ours:
- **staged**: the coordinator (``run_search``) *enqueues* each run as a WAITING trial whose user attributes
  hold the run's key and config (``PooledStudy.submit``); a stage submits all its runs at once (every
  variant × the LRs its sweep surely needs) and waits for them. Workers claim WAITING trials with Optuna's
  atomic WAITING → RUNNING transition, train, ``tell``; so does the coordinator while it waits (worker 0,
  with the model it has loaded: ``--workers N`` starts N−1 processes; ``PooledStudy.wait_for``). The
  strategy's decisions read the same results in the same order as with one worker, so the pick is the same.
  Runs tried ahead of need live in a side study (``<name>.ahead``); a stage that then asks for one *adopts*
  the finished run into the search's study, so that study holds exactly one worker's runs. Two kinds: the
  rank stage's first doubling, queued there while the baseline trains (the stage always runs it, so the
  trainer that frees up first takes it), and, only while a worker would idle, the rank two steps up (a
  guess: the coordinator never trains one itself, since it decides nothing while it trains).
- **the fidelity ladder** (both strategies): each rung is a study of its own (``<name>.rung<steps>``),
  announced in the search's study (``RUNGS_ATTR``); its climbers' sure runs (each one's center LR and the
  step below) are queued at once, and workers claim them once the search's own queue is empty and train them
  at the rung's length (``objective.at_steps``), as does the coordinator while its sweeps wait.
- **optuna**: every worker samples (``study.ask``, TPE with ``constant_liar``) and prunes by itself; the
  coordinator enqueues the baseline, trains as worker 0 with the model it has loaded (``--workers N``
  starts N−1 processes; ``search.pool_optuna``) until ``--trials`` distinct runs, and picks the knee.
- **no config runs twice**: before training, a trial writes its key, then waits while a *lower-numbered*
  RUNNING trial holds the same key (or no key yet). Trial creation is serialised per study (RDB: a row
  lock on the study; journal: one log order), so every lower trial is visible to a higher one: of two
  live trials with one key, the higher always waits, and then answers from the finished run (cache).
- **a dead worker**: its RUNNING trial is failed (a dead local pid at once; a remote one once its Optuna
  heartbeat is older than the grace period) and requeued by Optuna's stale-trial retry callback
  (``storage.RequeueDeadRun``); the next free worker runs it. Nothing finished is touched.
- **a dead coordinator**: workers keep going (optuna: the run it was training is a dead worker's, above)
  or wait (staged) for ``grace_s()``; ``--resume`` counts the live local workers and starts only the
  missing ones.
- **a storage that goes away**: every process stops with one line (``StorageLost``); ``--resume`` goes on.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from loratune.errors import ConfigError
from loratune.search.config import SearchConfig
from loratune.search.poolstate import (
    AHEAD_SUFFIX,
    COORDINATOR_ATTR,
    DONE_ATTR,
    FACTORY_ENV,
    OPTIONS_ATTR,
    POLL_S,
    RUNGS_ATTR,
    WANTED_ATTR,
    WORKER_PREFIX,
    _coordinator_alive,
    _distinct,
    _quiet,
    _sys_attrs,
    _sys_set,
    recover_pool,
    search_fingerprint,
)
from loratune.search.space import RunConfig, Variant
from loratune.search.storage import (
    grace_s,
    has_heartbeat,
    heartbeat_s,
    storage_errors,
    storage_lost,
)
from loratune.search.study import (
    STUDY_NAME,
    Objective,
    SearchStudy,
    TrialRecord,
    _heartbeat,
    _host,
    _set_config_attrs,
)

if TYPE_CHECKING:
    import optuna

    from loratune.search.lr import LRPlan
    from loratune.search.run import SearchInputs


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

    def claim(self, only: set[str] | None = None) -> optuna.trial.Trial | None:
        """A WAITING trial (one of the keys ``only``, when given), taken with Optuna's atomic WAITING →
        RUNNING (what ``ask`` does first)."""
        import optuna
        from optuna.trial import TrialState

        for t in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            if only is not None and t.user_attrs.get("key") not in only:
                continue
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


class RungStudies:
    """The fidelity ladder's rung studies a worker serves once the search's queue is empty: announced by the
    coordinator in the search's study (``RUNGS_ATTR``: name, steps, fingerprint), each opened once and
    trained with the worker's objective at that rung's length."""

    def __init__(self, main: SearchStudy, objective: Objective) -> None:
        self.main, self.objective = main, objective
        self.open: dict[str, tuple[WorkerStudy, Objective]] = {}

    def claim(
        self, announced: list[dict[str, Any]]
    ) -> tuple[optuna.trial.Trial, RunConfig, WorkerStudy, Objective] | None:
        """A queued run of the ``announced`` rungs (``RUNGS_ATTR``), claimed (the newest rung first: the one
        the ladder waits on), or None."""
        at_steps = getattr(self.objective, "at_steps", None)
        if at_steps is None:  # an objective that trains at one length only serves no rung
            return None
        for rung in reversed(announced):
            name = str(rung["name"])
            if name not in self.open:  # on the search's own storage: no second connection
                study = WorkerStudy(self.main._storage, fingerprint=str(rung["fingerprint"]), name=name,
                                    create=False, recover=False)  # fmt: skip
                self.open[name] = (study, at_steps(int(rung["steps"])))
            study, objective = self.open[name]
            trial = study.claim()
            if trial is not None:
                return trial, queued_config(trial), study, objective
        return None

    def studies(self) -> list[WorkerStudy]:
        return [study for study, _ in self.open.values()]


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
    device: str | None = None,
    say: Callable[[str], None] = print,
) -> int:
    """Join the search in ``storage`` and run its trials until it is done; returns the runs trained.
    Raises ``StorageLost`` (one line) when the storage goes away."""
    try:
        return _run_worker(storage, study_name, index=index, threads=threads, device=device, say=say)
    except storage_errors() as e:
        raise storage_lost(storage, e) from None


def _run_worker(storage: str, study_name: str, *, index: int, threads: int | None, device: str | None,
                say: Callable[[str], None]) -> int:  # fmt: skip
    from pathlib import Path

    from loratune.search.storage import JOURNAL_SCHEME

    for scheme in ("sqlite:///", JOURNAL_SCHEME):  # a worker joins a study; it never makes a file of one
        if storage.startswith(scheme):
            path = Path(("/" if scheme == JOURNAL_SCHEME else "") + storage[len(scheme) :].split("?", 1)[0])
            if not path.is_file():
                raise ConfigError(f"no study at {path}", "pass the --out or --storage of a running search")
    probe = SearchStudy(storage, fingerprint="", name=study_name, create=False, recover=False)
    deadline = time.monotonic() + grace_s()
    while OPTIONS_ATTR not in probe.study.user_attrs:
        if time.monotonic() > deadline:
            raise ConfigError(f"study {study_name!r} holds no search options", "start it with `loratune search`")
        time.sleep(POLL_S)
    if COORDINATOR_ATTR not in _sys_attrs(probe):
        raise ConfigError(
            f"the search in study {study_name!r} runs without workers (it trains in its own process)",
            "start it with `loratune search … --workers N` (and a journal or server storage), then join it",
        )
    config = SearchConfig.from_dict(probe.study.user_attrs[OPTIONS_ATTR], source=f"study {study_name!r}")
    config = replace(config, threads=threads or config.threads, device=device or config.device)
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
    opt = None
    if config.strategy == "optuna":
        from loratune.search.run import optuna_options

        study = optuna_worker_study(storage, fp, config, index=index, name=study_name)
        opt = optuna_options(config)
    else:
        study = WorkerStudy(storage, fingerprint=fp, name=study_name, create=False, recover=False)
    ahead = None
    if config.strategy == "staged":
        with contextlib.suppress(ConfigError):  # a coordinator that tries nothing ahead has no side study
            ahead = WorkerStudy(storage, fingerprint=fp, name=study_name + AHEAD_SUFFIX, create=False, recover=False)
    me = f"{WORKER_PREFIX}{_host()}:{os.getpid()}"
    where = f"{_host()}:{os.getpid()}, {config.device}"
    say(f"worker {index} ({where}) joined study {study_name!r}: {config.strategy} search")
    trained, asked, idle_since = 0, 0, time.monotonic()
    from loratune.search.baseline import plan_for

    plan = plan_for(inputs.baseline, config.lr or inputs.recommended_lr, config.lr_runs)
    rungs = RungStudies(study, objective)
    last_beat = last_check = -math.inf
    while True:
        if time.monotonic() - last_beat >= heartbeat_s():  # "alive" (the journal keeps every write)
            last_beat = time.monotonic()
            _sys_set(study, me, time.time())
        if time.monotonic() - last_check > 1.0:
            last_check = time.monotonic()
            recover_pool(study)
            for side in [ahead, *rungs.studies()]:
                if side is not None:
                    recover_pool(side)
        attrs = _sys_attrs(study)
        if attrs.get(DONE_ATTR):
            break
        trial, run, which = _next_run(study, opt, plan, asked, ahead)
        train = objective
        if trial is None:
            rung = rungs.claim(attrs.get(RUNGS_ATTR) or [])
            if rung is not None:
                trial, run, which, train = rung
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
        asked += which is study  # optuna's cap counts its own asks only
        prune = opt is not None and opt.pruner != "none" and which is study  # rung runs are never pruned
        rec = which.run(run, train, trial=trial, prune=prune)
        idle_since = time.monotonic()
        if rec.cached_study is None:
            trained += 1
        say(f"worker {index}: trial {rec.number} {run.variant.label()} lr {run.learning_rate:g} {rec.state.lower()}")
    with contextlib.suppress(Exception):
        _sys_set(study, me, 0.0)
    for held in (study, ahead, probe):  # a server's connections closed, not dropped (see main)
        engine = getattr(getattr(held, "_storage", None), "engine", None)
        if engine is not None:
            with contextlib.suppress(Exception):
                engine.dispose()
    say(f"worker {index}: done, {trained} run(s) trained")
    return trained


def _next_run(
    study: WorkerStudy, opt: Any, plan: LRPlan, asked: int, ahead: WorkerStudy | None = None
) -> tuple[Any, RunConfig | None, WorkerStudy]:
    """The next trial to run and its study: a queued one (staged; the search's own first, then one tried
    ahead that is still wanted), or a sampled one while runs are missing (optuna)."""
    if opt is None:
        trial, which = study.claim(), study
        if trial is None and ahead is not None:
            wanted = set(_sys_attrs(ahead).get(WANTED_ATTR) or [])
            trial, which = (ahead.claim(only=wanted) if wanted else None), ahead
        if trial is None:
            return None, None, study
        return trial, queued_config(trial), which
    from optuna.trial import TrialState

    from loratune.search.optuna_strategy import _suggest

    finished = study.finished()
    running = study.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    waiting = study.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    if asked >= 4 * opt.n_trials or (not waiting and _distinct(finished) + len(running) >= opt.n_trials):
        return None, None, study
    trial = study.ask()
    variant, lr = _suggest(trial, opt, plan)
    return trial, RunConfig(variant, lr, stage="optuna"), study


def queued_config(trial: optuna.trial.Trial) -> RunConfig:
    """The run a queued (WAITING, now claimed) trial stands for: its user attributes (``PooledStudy.submit``)."""
    ua = trial.user_attrs
    return RunConfig(Variant.from_dict(ua["variant"]), float(ua["learning_rate"]), stage=ua.get("stage", ""))


def optuna_worker_study(storage: Any, fp: str, config: SearchConfig, *, index: int, name: str) -> WorkerStudy:
    """Worker ``index``'s view of an optuna search's study at ``storage`` (a URL or an opened storage): its
    own sampler and the search's pruner (the coordinator trains as worker 0 through the same)."""
    sampler, pruner = _worker_sampler(config, index)
    return WorkerStudy(storage, fingerprint=fp, name=name, sampler=sampler, pruner=pruner, create=False, recover=False)


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
    parser.add_argument("--device", default=None)
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
    # A local worker leaves without the interpreter's teardown: with torch loaded that takes 1–1.7 s (measured
    # on the 2-core VM) that the coordinator, waiting for its workers to end, would add to every search.
    # Nothing is pending by now: each study write is committed (journal lines closed, RDB engine disposed).
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
