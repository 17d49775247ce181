"""The seed's staged method (000 §1.3, §3.5, §4.2), automated.

baseline (the recommendation) → rank: double while doubling pays more than ``rank_tolerance``; when the
first doubling does not pay, halve while halving costs less than it → alpha r / 2r / 4r at that rank →
modules (attention, attention + MLP, the recommended set) → when the modules changed, re-check a lower
rank (with all linear layers adapted, rank matters less [QLoRA 2305.14314]) → optionally DoRA and the
top half of the layers → final: the knee over every variant seen. Each stage carries its winner forward;
each variant's LR is tuned (``lr.tune_lr``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from loratune.search.events import Log, RunFinished, StageStarted, VariantScored, ignore
from loratune.search.knee import Choice, VariantScore, choose, score_variants
from loratune.search.lr import (
    LRPlan,
    LRSweep,
    expected_runs,
    lr_walk,
    opening_lrs,
    side_by_side,
    sweep_side_by_side,
    tune_lr,
)
from loratune.search.metric import metric_score
from loratune.search.space import RunConfig, Variant
from loratune.search.study import Objective, SearchStudy


@dataclass(frozen=True)
class StagedOptions:
    rank_tolerance: float = 0.01  # a doubling of r must lower perplexity by at least this (relative)
    min_r: int = 2
    max_r: int = 64
    alpha_ratios: tuple[float, ...] = (1.0, 2.0, 4.0)
    module_sets: tuple[str, ...] = ("attention", "all-linear")
    try_dora: bool = False
    try_layers: bool = False
    cost: str = "params"
    tolerance: float = 0.01
    max_forgetting: float | None = None
    metric: str = "loss"  # loss (perplexity), or a classifier's accuracy / f1 (search/metric.py)


@dataclass
class StageLog:
    name: str
    tried: list[Variant] = field(default_factory=list)
    winner: Variant | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tried": [v.label() for v in self.tried],
            "winner": self.winner.label() if self.winner else None,
            "note": self.note,
        }


@dataclass
class SearchOutcome:
    strategy: str
    stages: list[StageLog]
    choice: Choice  # the pick: the ladder's, when one ran
    ladder: Any = None  # search.ladder.LadderOutcome, when the finalists were re-run at growing lengths
    short_choice: Choice | None = None  # the knee over the short runs alone (what the ladder started from)


def planned_variants(baseline: Variant, opt: StagedOptions) -> int:
    """About how many distinct variants the staged plan evaluates from ``baseline`` (for the ETA and the
    time budget): the baseline, up to two rank steps, the other alpha ratios, the other module sets, and
    the optional DoRA / layers pairs. The rank stage may walk further and the re-check may add one."""
    doublings = int(math.log2(opt.max_r / baseline.r)) if opt.max_r > baseline.r else 0
    rank = min(doublings, 2) if doublings else int(baseline.r // 2 >= opt.min_r)
    alphas = max(0, len(opt.alpha_ratios) - 1)
    modules = len(dict.fromkeys([*opt.module_sets, baseline.modules])) - 1
    return 1 + rank + alphas + modules + int(opt.try_dora) + int(opt.try_layers)


def at_rank(v: Variant, r: int) -> Variant:
    """``v`` at rank ``r`` with alpha/r kept: the scaling stays, only capacity moves (the rank stage's step)."""
    return v.with_(r=r, alpha=float(r * (v.alpha / v.r)))


class StagedSearch:
    def __init__(
        self,
        study: SearchStudy,
        objective: Objective,
        plan: LRPlan,
        options: StagedOptions | None = None,
        log: Log = ignore,
    ) -> None:
        self.study, self.objective, self.plan = study, objective, plan
        self.opt = options or StagedOptions()
        self.log = log
        # Every variant evaluated, finite or not: a variant whose every run failed is remembered too, so
        # a later stage that proposes it again asks nothing of the study.
        self._scores: dict[Variant, VariantScore] = {}
        self._planned_runs = 0
        self._requested = 0

    def runs_left(self) -> int:
        """The plan's estimate of the run requests still to come (at least one sweep until it ends)."""
        return max(self._planned_runs - self._requested, expected_runs(self.plan.max_runs) if self._planned_runs else 0)

    # One variant = a short LR sweep; each run goes through the study (cached, persisted).
    def evaluate(self, variant: Variant, stage: str) -> VariantScore:
        if variant in self._scores:
            return self._scores[variant]
        self._submit([variant], stage)
        sweep = tune_lr(lambda lr: self._loss_at(variant, lr, stage), self.plan, self.plan.center(variant))
        return self._score(variant, sweep, stage)

    def _loss_at(self, variant: Variant, lr: float, stage: str) -> float:
        started = time.perf_counter()
        rec = self.study.run(RunConfig(variant, lr, stage=stage), self.objective)
        self._requested += 1
        self.log(RunFinished(rec, time.perf_counter() - started, self.runs_left()))
        return rec.val_loss if self.opt.metric == "loss" else metric_score(rec.result, self.opt.metric)

    def _score(self, variant: Variant, sweep: LRSweep, stage: str) -> VariantScore:
        runs = [r for r in self.study.finished() if r.variant == variant]
        scored = score_variants(runs, self.opt.metric)
        if scored:
            self._scores[variant] = scored[0]
            self.log(VariantScored(variant, scored[0].ppl, sweep.best_lr, stage))
            return scored[0]
        self.log(VariantScored(variant, None, None, stage))
        # the sweep ran at least once, so runs is not empty
        failed = VariantScore(variant, runs[0], runs, self.opt.metric)
        self._scores[variant] = failed
        return failed

    def _evaluate_side_by_side(self, variants: list[Variant], stage: str) -> None:
        """With workers: step these variants' LR sweeps together (``lr.sweep_side_by_side``), so one sweep's
        third run does not wait for another's to end (one after another, each walk beyond its first two runs
        trained alone while a worker idled). Every score is the one a variant gets alone; they are recorded
        in ``variants``' order."""
        todo = [v for v in dict.fromkeys(variants) if v not in self._scores]
        if not side_by_side(self.study, todo):
            return
        walks = {v: lr_walk(self.plan, self.plan.center(v)) for v in todo}
        swept = sweep_side_by_side(walks, lambda v, lr: RunConfig(v, lr, stage=stage), self.study, self.objective,
                                   lambda v, lr: self._loss_at(v, lr, stage))  # fmt: skip
        for v in todo:
            self._score(v, swept[v], stage)

    def _submit(self, variants: list[Variant], stage: str) -> None:
        """With workers (a study that can ``submit``): hand out at once the runs these variants' LR sweeps
        surely make (the center and the step above, as ``tune_lr`` starts); each sweep decides from its own
        runs only, so the decisions and the pick are those of one worker."""
        submit = getattr(self.study, "submit", None)
        if submit is None:
            return
        for v in variants:
            if v in self._scores:
                continue
            for lr in opening_lrs(self.plan, self.plan.center(v)):
                submit(RunConfig(v, lr, stage=stage))

    def _speculate(self, variant: Variant, stage: str, *, sure: bool = False) -> None:
        """With workers that can try runs ahead (``speculate``): ``variant``'s sure LR runs, kept apart from
        the study until a stage asks for them, so the pick and the study stay those of one worker. ``sure``:
        the next stage will ask for them whatever happens, so a trainer that frees up takes them at once."""
        speculate = getattr(self.study, "speculate", None)
        if speculate is None or variant in self._scores:
            return
        for lr in opening_lrs(self.plan, self.plan.center(variant)):
            speculate(RunConfig(variant, lr, stage=stage), sure=sure)

    def _settle(self) -> None:
        """With workers: runs tried ahead and not yet started are not wanted any more (the rank is decided)."""
        settle = getattr(self.study, "settle", None)
        if settle is not None:
            settle()

    def _pick(self, variants: list[Variant], stage: str, tolerance: float) -> Variant:
        self._submit(variants, stage)
        self._evaluate_side_by_side(variants, stage)
        scores = [self.evaluate(v, stage) for v in variants]
        finite = [s for s in scores if s.best.result is not None and s.score < float("inf")]
        if not finite:
            return variants[0]
        return choose(finite, cost=self.opt.cost, tolerance=tolerance, max_forgetting=None).chosen.variant

    def _ppl(self, v: Variant, stage: str) -> float:
        return self.evaluate(v, stage).score  # perplexity, or 1 / accuracy (F1): relative either way

    def run(self, baseline: Variant) -> SearchOutcome:
        o = self.opt
        stages: list[StageLog] = []
        self._planned_runs = planned_variants(baseline, o) * expected_runs(self.plan.max_runs)

        self.log(StageStarted("baseline"))
        self._submit([baseline], "baseline")
        if baseline.r * 2 <= o.max_r:  # a trainer free before the baseline ends takes the rank stage's first
            self._speculate(at_rank(baseline, baseline.r * 2), "rank", sure=True)  # doubling: always tried
        self.evaluate(baseline, "baseline")
        stages.append(StageLog("baseline", [baseline], baseline, "the recommended configuration"))

        self.log(StageStarted("rank"))
        current = self._rank_stage(baseline, "rank", stages)

        self.log(StageStarted("alpha"))
        alphas = [current.with_(alpha=float(current.r * a)) for a in o.alpha_ratios]
        # alpha costs nothing (same params): take the best perplexity.
        winner = self._pick(alphas, "alpha", tolerance=0.0)
        stages.append(StageLog("alpha", alphas, winner, "alpha = r, 2r, 4r at the chosen rank; LR tuned for each"))
        current = winner

        self.log(StageStarted("modules"))
        sets = list(dict.fromkeys([*o.module_sets, baseline.modules]))
        mods = [current.with_(modules=m) for m in sets]
        winner = self._pick(mods, "modules", tolerance=o.tolerance)
        stages.append(StageLog("modules", mods, winner, f"the cheapest within {o.tolerance:.1%} of the best"))
        if winner.modules != current.modules and winner.r // 2 >= o.min_r:
            self.log(StageStarted("rank (again, with the new modules)"))
            current = self._rank_stage(winner, "rank-2", stages, down_only=True)
        else:
            current = winner

        if o.try_dora:
            self.log(StageStarted("dora"))
            pair = [current, current.with_(method="dora")]
            current = self._pick(pair, "dora", tolerance=o.tolerance)
            stages.append(StageLog("dora", pair, current, "DoRA adds a magnitude vector per matrix"))
        if o.try_layers:
            self.log(StageStarted("layers"))
            pair = [current, current.with_(layers="top-half")]
            current = self._pick(pair, "layers", tolerance=o.tolerance)
            stages.append(StageLog("layers", pair, current, "adapting only the top half of the layers"))

        self._planned_runs = 0  # the plan is walked: nothing left to run
        all_scores = [s for s in self._scores.values() if s.best.result is not None and s.score < float("inf")]
        choice = choose(all_scores, cost=o.cost, tolerance=o.tolerance, max_forgetting=o.max_forgetting)
        stages.append(StageLog("final", [s.variant for s in all_scores], choice.chosen.variant, choice.reason()))
        return SearchOutcome("staged", stages, choice)

    def _rank_stage(self, start: Variant, name: str, stages: list[StageLog], down_only: bool = False) -> Variant:
        o = self.opt
        tried = [start]

        def at(r: int) -> Variant:
            v = at_rank(start, r)
            tried.append(v)
            return v

        went_up = False
        r = start.r
        if not down_only:
            while r * 2 <= o.max_r:
                nxt = at(r * 2)
                self._submit([nxt], name)
                if r * 4 <= o.max_r:  # with idle workers: two ranks up, in case doubling pays again
                    self._speculate(at_rank(start, r * 4), name)
                gain = self._ppl(at_rank(start, r), name) / self._ppl(nxt, name) - 1
                if gain < o.rank_tolerance:
                    break  # doubling stopped paying
                went_up, r = True, r * 2
            self._settle()  # the ranks tried ahead above are not wanted any more
        if not went_up:
            r = start.r
            while r // 2 >= o.min_r:
                lower = at(r // 2)
                # halving is free when perplexity stays within the tolerance
                if self._ppl(lower, name) > self._ppl(at_rank(start, r), name) * (1 + o.rank_tolerance):
                    break
                r //= 2
        self._settle()
        variants = list(dict.fromkeys(tried))
        winner = self._pick(variants, name, tolerance=o.rank_tolerance)
        note = f"doubling r must lower perplexity by ≥ {o.rank_tolerance:.1%}; the cheapest rank within it wins"
        stages.append(StageLog(name, variants, winner, note))
        return winner
