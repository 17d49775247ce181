"""The ``optuna`` strategy: a seeded TPE sampler over r, alpha/r (or rsLoRA), modules, dropout, DoRA and
the learning rate, with successive-halving or Hyperband pruning on the validation loss reported while
a run trains. The LR is sampled as a step on the ladder around each variant's scaled center
(``LRPlan.center``), so it is tuned per variant and stays comparable across variants."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from loratune.errors import ConfigError
from loratune.search.events import Log, RunFinished, ignore
from loratune.search.knee import choose, score_variants
from loratune.search.lr import LRPlan
from loratune.search.space import RunConfig, Variant
from loratune.search.staged import SearchOutcome, StageLog
from loratune.search.study import Objective, SearchStudy

PRUNERS = ("halving", "hyperband", "none")


@dataclass(frozen=True)
class OptunaOptions:
    n_trials: int = 20
    ranks: tuple[int, ...] = (2, 4, 8, 16, 32)
    alpha_ratios: tuple[float, ...] = (1.0, 2.0, 4.0)
    module_sets: tuple[str, ...] = ("attention", "all-linear")
    dropouts: tuple[float, ...] = (0.05,)
    try_dora: bool = False
    try_rslora: bool = False
    lr_steps: tuple[int, int] = (-2, 2)  # ladder steps around the scaled center
    pruner: str = "halving"
    seed: int = 0
    cost: str = "params"
    tolerance: float = 0.01
    max_forgetting: float | None = None
    metric: str = "loss"  # the knee ranks by it; TPE and pruning follow the validation loss

    def __post_init__(self) -> None:
        if self.n_trials < 1:
            raise ConfigError(f"--trials must be >= 1, got {self.n_trials}", "use e.g. --trials 20")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"unknown pruner {self.pruner!r}", f"use one of {', '.join(PRUNERS)}")


def make_sampler_and_pruner(opt: OptunaOptions, min_resource: int) -> tuple[Any, Any]:
    import optuna

    sampler = optuna.samplers.TPESampler(seed=opt.seed, n_startup_trials=max(4, opt.n_trials // 4))
    if opt.pruner == "halving":
        pruner: Any = optuna.pruners.SuccessiveHalvingPruner(min_resource=min_resource, reduction_factor=3)
    elif opt.pruner == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(min_resource=min_resource, reduction_factor=3)
    else:
        pruner = optuna.pruners.NopPruner()
    return sampler, pruner


def _suggest(trial: Any, opt: OptunaOptions, plan: LRPlan) -> tuple[Variant, float]:
    r = trial.suggest_categorical("r", list(opt.ranks))
    rslora = trial.suggest_categorical("use_rslora", [False, True]) if opt.try_rslora else False
    ratio = trial.suggest_categorical("alpha_ratio", list(opt.alpha_ratios))
    modules = trial.suggest_categorical("modules", list(opt.module_sets))
    dropout = trial.suggest_categorical("dropout", list(opt.dropouts)) if len(opt.dropouts) > 1 else opt.dropouts[0]
    method = trial.suggest_categorical("method", ["lora", "dora"]) if opt.try_dora else "lora"
    variant = Variant(r=r, alpha=float(r * ratio), modules=modules, method=method, dropout=dropout, use_rslora=rslora)
    step = trial.suggest_int("lr_step", opt.lr_steps[0], opt.lr_steps[1])
    return variant, plan.snap(plan.center(variant) * plan.factor**step)


def baseline_params(baseline: Variant, opt: OptunaOptions) -> dict[str, Any]:
    """The sampler's parameters of the recommended variant (the first trial of a study)."""
    return {
        "r": baseline.r if baseline.r in opt.ranks else opt.ranks[len(opt.ranks) // 2],
        "alpha_ratio": baseline.alpha_ratio if baseline.alpha_ratio in opt.alpha_ratios else opt.alpha_ratios[0],
        "modules": baseline.modules if baseline.modules in opt.module_sets else opt.module_sets[0],
        "lr_step": 0,
    }


def optuna_search(
    study: SearchStudy,
    objective: Objective,
    plan: LRPlan,
    opt: OptunaOptions,
    baseline: Variant | None = None,
    log: Log = ignore,
) -> SearchOutcome:
    """Run until ``n_trials`` distinct runs finished in this study (resumed studies count what they hold)."""
    if baseline is not None and not study.records():
        # Start from the recommendation, so the sampler sees a sensible point first.
        study.study.enqueue_trial(baseline_params(baseline, opt), skip_if_exists=True)

    def distinct_done() -> int:
        return sum(1 for r in study.finished() if r.cached_study != "self")

    asked = 0
    # Repeated proposals are answered from the cache and do not count; the cap keeps a converged
    # sampler from looping forever.
    while distinct_done() < opt.n_trials and asked < 4 * opt.n_trials:
        trial = study.ask()
        asked += 1
        variant, lr = _suggest(trial, opt, plan)
        started = time.perf_counter()
        rec = study.run(RunConfig(variant, lr, stage="optuna"), objective, trial=trial, prune=opt.pruner != "none")
        log(RunFinished(rec, time.perf_counter() - started, max(0, opt.n_trials - distinct_done())))
    scores = score_variants(study.finished(), opt.metric)
    choice = choose(scores, cost=opt.cost, tolerance=opt.tolerance, max_forgetting=opt.max_forgetting)
    tried = [s.variant for s in scores]
    return SearchOutcome("optuna", [StageLog("optuna", tried, choice.chosen.variant, choice.reason())], choice)
