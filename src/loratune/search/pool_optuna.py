"""The ``optuna`` strategy on many workers, the coordinator's side: it enqueues the baseline, starts N−1 local
worker processes and trains as worker 0 itself, with the model it has already loaded, until ``--trials``
distinct runs are finished; then it picks the knee. How the pieces fit: ``search.workers``'s header.

Why the coordinator trains: with optuna it has nothing else to do, and it is the one process whose model is
loaded when the search starts. Measured on the 2-core VM (``bench/scale_out.py``, 16 trials): a worker
process needs 4–8 s (Python, torch, the model, the data) before its first trial; with the coordinator
merely waiting, both workers paid 8 s before anything trained (107.8 s in all); training as worker 0, the
baseline is under way at once and worker 1 joins at 3.9 s.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from loratune.search.events import Log, RunFinished, ignore
from loratune.search.poolstate import POLL_S, _distinct, _live_workers, recover_pool
from loratune.search.study import Objective, beating

if TYPE_CHECKING:
    from loratune.search.config import SearchConfig
    from loratune.search.lr import LRPlan
    from loratune.search.pool import PooledStudy
    from loratune.search.space import Variant
    from loratune.search.staged import SearchOutcome


def pooled_optuna(
    study: PooledStudy,
    config: SearchConfig,
    *,
    baseline: Variant | None,
    plan: LRPlan | None = None,
    objective: Objective | None = None,
    log: Log = ignore,
) -> SearchOutcome:
    """Enqueue the baseline, start the workers, train as worker 0 (with ``objective`` and ``plan``; without
    them the coordinator only waits) until ``n_trials`` distinct finished runs and no run in flight, pick
    the knee."""
    from optuna.trial import TrialState

    from loratune.search.knee import choose, score_variants
    from loratune.search.optuna_strategy import baseline_params
    from loratune.search.run import optuna_options
    from loratune.search.staged import SearchOutcome, StageLog
    from loratune.search.workers import _next_run, optuna_worker_study

    opt = optuna_options(config)
    if baseline is not None and not study.records():
        study.study.enqueue_trial(baseline_params(baseline, opt), skip_if_exists=True)
    mine = None
    if objective is not None and plan is not None:  # worker 0: its own sampler (seeded as index 0), same storage
        mine = optuna_worker_study(study._storage, study.fingerprint, config, index=0, name=study.name)
    if study.pool is not None and _distinct(study.finished()) < opt.n_trials:
        study.pool.ensure_started(study)
    seen: set[int] = set()
    asked, last_check = 0, -math.inf
    started = time.perf_counter()
    with beating(study.beat, "loratune-coordinator-beat"):  # training a long run, still alive to remote workers
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
                if study.pool is not None and mine is None:  # a coordinator that trains is a worker left
                    study.pool.check(study)
            if mine is not None:
                assert objective is not None and plan is not None
                trial, run, _ = _next_run(mine, opt, plan, asked)
                if trial is not None and run is not None:
                    asked += 1
                    mine.run(run, objective, trial=trial, prune=opt.pruner != "none")
                    continue
                if asked >= 4 * opt.n_trials and not live and not _live_workers(study):
                    break  # a converged sampler everywhere: what one worker does (optuna_search's cap)
            time.sleep(POLL_S)
    scores = score_variants(study.finished(), opt.metric)
    choice = choose(scores, cost=opt.cost, tolerance=opt.tolerance, max_forgetting=opt.max_forgetting)
    tried = [s.variant for s in scores]
    return SearchOutcome("optuna", [StageLog("optuna", tried, choice.chosen.variant, choice.reason())], choice)
