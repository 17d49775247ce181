"""``--time-budget MINUTES``: size a search to end in about that long on this machine.

A short probe run (a few steps of the baseline, a few validation examples, not recorded) measures
seconds per optimizer step and per evaluated example. A run then costs

    overhead + steps · s_step + evals · (val_examples + reference) · s_eval

with ``evals`` = 2 (before and after) plus the mid-run evaluations a pruner asks for, and the search
about ``planned runs`` of them (staged: ``planned_variants ×`` the runs a sweep usually makes;
optuna: ``trials``). With the fidelity ladder on (``finalists`` > 0) the search gets half the budget and
the ladder the rest: its top rung is the longest (up to one epoch or ``--max-final-steps``) whose rungs
fit; when not even the first rung fits, the ladder is dropped. Knobs of the search are given up in this
order until its estimate fits: steps (down to 10), validation examples (to 32, then 16, steps again down
to 10 at each), the LR sweep (to 1 run per variant), steps (to 4), validation examples (to 8), steps
(to 1). Nothing is ever raised above what was asked. Without the option nothing is probed or changed.

With ``--workers N`` the probe runs at one worker's share of the threads, and the budget holds
``1 + (N − 1) · POOL_GAIN`` times the serial seconds: each added local worker is counted as 0.4 of one.
``bench/scale_out.py`` (two 1-thread workers on 2 cores, bench/results/scale_out.json) measured staged
1.38×, optuna 1.75×, staged with its ladder 1.86×, so a staged search without the ladder may end a few
percent past its budget on such a machine, the others short of it. Workers that join from other machines
are not known when the search is sized.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from loratune.errors import ConfigError
from loratune.search.config import SearchConfig
from loratune.search.events import BudgetSized, Log
from loratune.search.ladder import rung_steps, survivors
from loratune.search.lr import expected_runs
from loratune.search.staged import planned_variants

if TYPE_CHECKING:
    from loratune.search.run import SearchInputs

PROBE_STEPS = 3
NEAR_ALLOWANCE = 2
PROBE_VAL = 8
POOL_GAIN = 0.4  # what one more local worker adds, in serial runs (measured: see the module doc)


@dataclass(frozen=True)
class Throughput:
    seconds_per_step: float
    seconds_per_eval_example: float
    overhead_seconds: float = 0.0  # per run: building the adapter, cleanup


@dataclass(frozen=True)
class Sizing:
    config: SearchConfig
    planned_runs: int
    estimated_seconds: float


def probe(runner: Any, spec: Any, settings: Any, train: Any, val: Any) -> Throughput:
    """Time a ``PROBE_STEPS``-step run of ``spec`` (first ``PROBE_VAL`` validation examples, no reference).
    The first steps are the slowest (allocation, kernel choice), so the estimate errs long."""
    from dataclasses import replace as with_

    short = with_(settings, max_steps=PROBE_STEPS, eval_every=None)
    res = runner.run(spec, short, train, val[:PROBE_VAL], None, progress=False, measure_memory=False)
    steps = max(1, res.steps or PROBE_STEPS)
    train_s = float(res.extra.get("train_seconds", res.wall_seconds))
    eval_s = float(res.extra.get("eval_seconds", 0.0))
    evaluated = 2 * min(PROBE_VAL, len(val))
    overhead = max(0.0, res.wall_seconds - train_s - eval_s)
    return Throughput(train_s / steps, eval_s / evaluated if evaluated else 0.0, overhead)


def _fixed_seconds(tp: Throughput, config: SearchConfig, n_reference: int, n_val: int | None = None) -> float:
    """A run's cost besides its training steps: overhead and evaluations (a pruner's midway ones too).
    ``n_val``: the validation examples there are (the data may hold fewer than ``val_examples``)."""
    evals = 2 + (config.steps // config.eval_every - 1 if config.eval_every else 0)
    val = min(config.val_examples, n_val) if n_val is not None else config.val_examples
    return tp.overhead_seconds + evals * (val + n_reference) * tp.seconds_per_eval_example


def run_seconds(tp: Throughput, config: SearchConfig, n_reference: int, n_val: int | None = None) -> float:
    return _fixed_seconds(tp, config, n_reference, n_val) + config.steps * tp.seconds_per_step


def planned_runs(config: SearchConfig, variants: int) -> int:
    return config.trials if config.strategy == "optuna" else variants * expected_runs(config.lr_runs)


def ladder_seconds(tp: Throughput, config: SearchConfig, top: int, n_reference: int, n_val: int | None = None) -> float:
    """The ladder's estimate: per rung, its variants × a sweep's usual runs × a run of the rung's steps."""
    # the finalists plus the near ones the ladder adds (within 2x the tolerance): measured, the demo's
    # 3 finalists came as 5, so the estimate allows for NEAR_ALLOWANCE more
    n, total = config.finalists + NEAR_ALLOWANCE, 0.0
    for steps in rung_steps(config.steps, top):
        rung = replace(config, steps=steps, pruner="none")  # no midway evaluations on a rung
        total += n * expected_runs(config.lr_runs) * run_seconds(tp, rung, n_reference, n_val)
        n = survivors(n) + (config.finalists >= 2)  # the capacity challenger climbs every rung
    return total


def pool_speedup(workers: int) -> float:
    """Serial seconds a wall-clock second holds with ``workers`` local trainers (``POOL_GAIN`` each past one)."""
    return 1.0 + (max(1, workers) - 1) * POOL_GAIN


def size(
    config: SearchConfig,
    tp: Throughput,
    seconds: float,
    *,
    variants: int,
    n_reference: int,
    n_val: int | None = None,
    n_train: int | None = None,
    workers: int = 1,
) -> Sizing:
    """The largest config (by the order in the module doc) whose estimate fits in ``seconds`` of wall time
    (``workers`` local trainers: ``pool_speedup`` serial seconds per second); with the ladder on (and
    ``n_train`` known), the search fits half and the ladder's top rung the rest. ``estimated_seconds`` is
    wall time."""
    speedup = pool_speedup(workers)
    serial = _size_serial(config, tp, seconds * speedup, variants=variants, n_reference=n_reference, n_val=n_val,
                          n_train=n_train)  # fmt: skip
    return replace(serial, estimated_seconds=serial.estimated_seconds / speedup)


def _size_serial(
    config: SearchConfig,
    tp: Throughput,
    seconds: float,
    *,
    variants: int,
    n_reference: int,
    n_val: int | None,
    n_train: int | None,
) -> Sizing:
    ladder = config.finalists > 0 and n_train is not None
    search = _size_search(config, tp, seconds / 2 if ladder else seconds, variants=variants,
                          n_reference=n_reference, n_val=n_val)  # fmt: skip
    if not ladder or n_train is None:
        return search
    c, left = search.config, seconds - search.estimated_seconds
    top = c.ladder_top(n_train)
    while top > c.steps and ladder_seconds(tp, c, top, n_reference, n_val) > left:
        top = int(top * 0.9) if top > 20 else top - 1
    c = replace(c, max_final_steps=max(top, c.steps))  # top <= steps: no rung fits, no ladder
    return Sizing(c, search.planned_runs, search.estimated_seconds + ladder_seconds(tp, c, top, n_reference, n_val))


def _size_search(
    config: SearchConfig, tp: Throughput, seconds: float, *, variants: int, n_reference: int, n_val: int | None = None
) -> Sizing:
    ladder = [
        (config.val_examples, config.lr_runs, min(config.steps, 10)),
        (min(config.val_examples, 32), config.lr_runs, min(config.steps, 10)),
        (min(config.val_examples, 16), config.lr_runs, min(config.steps, 10)),
        (min(config.val_examples, 16), 1, min(config.steps, 10)),
        (min(config.val_examples, 16), 1, min(config.steps, 4)),
        (min(config.val_examples, 8), 1, 1),
    ]
    candidate = config
    for val, lr_runs, min_steps in ladder:
        trial = replace(config, val_examples=val, lr_runs=lr_runs)
        runs = planned_runs(trial, variants)
        per_run_budget = seconds / runs
        fixed = _fixed_seconds(tp, trial, n_reference, n_val)
        fit = math.floor((per_run_budget - fixed) / tp.seconds_per_step) if tp.seconds_per_step > 0 else config.steps
        steps = min(config.steps, fit)
        candidate = replace(trial, steps=max(1, steps))
        if steps >= min_steps:
            break
    runs = planned_runs(candidate, variants)
    return Sizing(candidate, runs, runs * run_seconds(tp, candidate, n_reference, n_val))


def fit_to_budget(
    config: SearchConfig, inputs: SearchInputs, log: Log, spent: float, workers: int = 1
) -> tuple[SearchConfig, dict[str, Any]]:
    """Probe this machine, then size ``config`` to end ``config.time_budget`` minutes after the search
    started (``spent`` seconds ago) with ``workers`` local trainers (the probe at one worker's threads).
    Returns the sized config (its time_budget cleared, so a resume runs it as is) and the record of what
    was chosen (kept in search.json)."""
    from loratune.search.pool import threads_of_a_worker
    from loratune.search.run import staged_options

    assert config.time_budget is not None
    if inputs.runner is None:
        raise ConfigError("--time-budget needs the model runner to measure", "drop --time-budget")
    settings = config.train_settings(config.lr or inputs.recommended_lr, inputs.compute_dtype)
    spec = inputs.baseline.adapter_spec(inputs.anatomy.num_layers)
    t0 = time.perf_counter()
    with threads_of_a_worker(inputs.runner, workers, config.threads):
        tp = probe(inputs.runner, spec, settings, inputs.train, list(inputs.val))
    spent += time.perf_counter() - t0
    variants = planned_variants(inputs.baseline, staged_options(config))
    sizing = size(
        config,
        tp,
        config.time_budget * 60 - spent,
        variants=variants,
        n_reference=len(inputs.reference),
        n_val=len(inputs.val),
        n_train=len(inputs.train),
        workers=workers,
    )
    c = sizing.config
    log(
        BudgetSized(
            minutes=config.time_budget,
            steps=c.steps,
            val_examples=c.val_examples,
            lr_runs=c.lr_runs,
            seconds_per_step=tp.seconds_per_step,
            seconds_per_eval_example=tp.seconds_per_eval_example,
            planned_runs=sizing.planned_runs,
            estimated_seconds=sizing.estimated_seconds,
        )
    )
    record = {
        "minutes": config.time_budget,
        "asked": {"steps": config.steps, "val_examples": config.val_examples, "lr_runs": config.lr_runs},
        "chosen": {
            "steps": c.steps,
            "val_examples": c.val_examples,
            "lr_runs": c.lr_runs,
            "max_final_steps": c.max_final_steps,
        },  # fmt: skip
        "seconds_per_step": round(tp.seconds_per_step, 4),
        "seconds_per_eval_example": round(tp.seconds_per_eval_example, 4),
        "planned_runs": sizing.planned_runs,
        "workers": workers,
    }
    return replace(c, time_budget=None), record
