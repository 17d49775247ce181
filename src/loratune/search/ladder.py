"""The fidelity ladder: the search's best few variants re-run at growing run lengths, so the pick is the
one that wins when trained for real, not the one that learns fastest in a few steps.

A search's runs are short (10-30 steps); rank and module differences can appear only later, when
capacity runs out, and the best LR moves with run length [Bjorck et al., arXiv:2409.19913]. So after the
stages (staged) or the sampling (optuna), the finalists — the ``finalists`` best variants plus every
variant within 2x the knee tolerance of the best — climb rungs of successive halving over steps
[Jamieson & Talwalkar, arXiv:1502.07943; Li et al., Hyperband, arXiv:1603.06560]: each rung trains
``RUNG_FACTOR``x the steps of the one below (the last is ``top_steps``: ``--max-final-steps`` or one
epoch), re-tunes each variant's LR around its best of the rung below (downward first, never above a
best the rung below bracketed: the best LR falls with the horizon), and keeps the best third (the
rung's knee always among them). The knee is taken at the highest rung.

Short runs cannot see capacity: with the LR tuned, LoRA's loss curves at different ranks coincide early and
part only once the lower rank runs out of capacity [Schulman et al., "LoRA Without Regret", Thinking
Machines 2025]; attention-only adapters fall behind all-linear ones at length, even at equal parameter
counts [same]. A search that stopped doubling the rank in 5-step runs never ran the rank that wins at one
epoch (measured: ``bench/fidelity.py``). So one finalist slot goes to a **capacity challenger**
(:func:`capacity_challenger`): the best variant's family at the space's highest rank on every linear
layer (the next best's when that one is a finalist already), alpha kept, so that its source's LR carries
over (at a fixed alpha the best LR does not depend on the rank, LoRA Without Regret). It climbs every
rung — what it is there to measure shows only at the top — and the knee there decides whether its
capacity pays for its cost.

Each rung is its own study next to the search's (``<name>.rung<steps>``; its fingerprint holds the rung's
steps), so every rung run is persisted, cached and resumed like any other run. With workers, a rung's sure
runs (every climber's first two LRs) are submitted together, so they train side by side; the sweeps read
them in their usual order, and the outcome is one worker's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loratune.advise.lr_rule import lr_at_alpha
from loratune.search.events import Log, RunFinished, StageStarted, VariantScored, ignore
from loratune.search.knee import Choice, VariantScore, choose, score_variants
from loratune.search.lr import LRPlan, LRSweep, drive, lr_edge, lr_walk, opening_lrs, side_by_side, sweep_side_by_side
from loratune.search.metric import metric_score
from loratune.search.space import RunConfig, Variant
from loratune.search.study import Objective, SearchStudy

RUNG_FACTOR = 3  # steps grow 3x per rung (Hyperband's default eta)
MERGE_BELOW = 1.5  # a last rung less than 1.5x its predecessor replaces it (an almost-repeat buys nothing)
NEAR_FACTOR = 2.0  # finalists: every variant within 2x the knee tolerance of the best, on top of the best few


@dataclass(frozen=True)
class LadderOptions:
    finalists: int = 3  # 0 = no ladder
    top_steps: int = 0  # the last rung's steps (--max-final-steps, default one epoch)
    cost: str = "params"
    tolerance: float = 0.01
    max_forgetting: float | None = None
    metric: str = "loss"


@dataclass(frozen=True)
class CapacityBounds:
    """The corner of the search space a capacity challenger is built in."""

    max_r: int
    min_alpha_ratio: float = 1.0  # the space's lowest alpha/r: alpha is kept, but not below this at max_r
    widest_modules: str | None = "all-linear"  # None: keep the finalist's module set


@dataclass(frozen=True)
class Challenger:
    variant: Variant
    source: VariantScore  # the variant it widens: the best-scoring one whose widening is not a finalist
    own: VariantScore | None = None  # its own short runs, when the search happened to make some

    def first_lr(self, plan: LRPlan) -> float:
        if self.own is not None:
            return self.own.learning_rate
        # lr·alpha stays put (advise/lr_rule.py): the source's best LR, scaled down only when alpha had to grow
        return plan.snap(lr_at_alpha(self.source.learning_rate, self.source.variant.alpha, self.variant.alpha))


def capacity_challenger(
    scores: list[VariantScore], finalists: list[VariantScore], bounds: CapacityBounds
) -> Challenger | None:
    """The best-scoring variant's widening to the space's capacity (rank ``max_r``, the widest module
    set, alpha kept unless alpha/r would fall under the space's lowest ratio) that is not a finalist
    already; None when every widening is."""
    taken = {s.variant for s in finalists}
    ranked = sorted((s for s in scores if math.isfinite(s.score)), key=lambda s: (s.score, s.variant))
    for s in ranked:
        v = s.variant
        widened = v.with_(r=bounds.max_r, alpha=max(v.alpha, bounds.min_alpha_ratio * bounds.max_r),
                          modules=bounds.widest_modules or v.modules)  # fmt: skip
        if widened not in taken:
            return Challenger(widened, s, next((o for o in ranked if o.variant == widened), None))
    return None


def rung_steps(base: int, top: int, factor: int = RUNG_FACTOR) -> list[int]:
    """The rungs above a search of ``base`` steps: base·f, base·f², … below ``top``, then ``top``; a last
    rung under ``MERGE_BELOW``x its predecessor is merged into ``top``. Empty when ``top <= base``."""
    if top <= base:
        return []
    rungs: list[int] = []
    steps = base * factor
    while steps < top:
        rungs.append(steps)
        steps *= factor
    if rungs and top < rungs[-1] * MERGE_BELOW:
        rungs.pop()
    return [*rungs, top]


def survivors(n: int) -> int:
    """How many of ``n`` variants a rung passes up: the best ⌊n/η⌋ (resources ×η, survivors ÷η, as in
    successive halving and Hyperband's brackets, η = ``RUNG_FACTOR``), at least one. The rung's knee is
    kept besides (``climb``)."""
    return max(1, n // RUNG_FACTOR)


def pick_finalists(scores: list[VariantScore], count: int, tolerance: float) -> list[VariantScore]:
    """The ``count`` best-scoring variants, plus every one within ``NEAR_FACTOR``·tolerance of the best
    (the knee's pick is always among those), best first."""
    ranked = sorted((s for s in scores if math.isfinite(s.score)), key=lambda s: (s.score, s.variant))
    if count < 1 or not ranked:
        return []
    limit = ranked[0].score * (1 + NEAR_FACTOR * tolerance)
    return [s for i, s in enumerate(ranked) if i < count or s.score <= limit]


@dataclass
class Rung:
    steps: int
    study_name: str
    scores: list[VariantScore] = field(default_factory=list)
    choice: Choice | None = None
    edges: dict[Variant, str | None] = field(default_factory=dict)  # variant → lr_edge of its sweep here

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "study": self.study_name,
            "variants": [
                {
                    "variant": s.variant.label(),
                    "ppl": s.ppl if math.isfinite(s.ppl) else None,
                    "score": s.score if math.isfinite(s.score) else None,
                    "learning_rate": s.learning_rate,
                    "lrs": {f"{r.learning_rate:g}": (r.val_ppl if math.isfinite(r.val_ppl) else None) for r in s.runs},
                    "lr_edge": self.edges.get(s.variant),
                    "tokens": sum(r.tokens for r in s.runs if r.cached_study is None),
                }
                for s in self.scores
            ],
            "chosen": self.choice.chosen.variant.label() if self.choice else None,
        }


@dataclass
class LadderOutcome:
    base_steps: int
    finalists: list[VariantScore]
    rungs: list[Rung]
    choice: Choice  # the knee at the highest rung reached
    first_choice: Variant | None = None  # the search's own pick, from its short runs
    challenger: Variant | None = None  # the capacity challenger: it joins at the first rung

    @property
    def climbers(self) -> list[Variant]:
        """Every variant that ran the first rung: the finalists, then the challenger."""
        return [s.variant for s in self.finalists] + ([self.challenger] if self.challenger else [])

    def to_dict(self) -> dict[str, Any]:
        return {
            "base_steps": self.base_steps,
            "finalists": [
                {"variant": s.variant.label(), "ppl": s.ppl, "score": s.score, "learning_rate": s.learning_rate}
                for s in self.finalists
            ],
            "challenger": self.challenger.label() if self.challenger else None,
            "rungs": [r.to_dict() for r in self.rungs],
            "chosen": self.choice.chosen.variant.label(),
            "chosen_steps": self.rungs[-1].steps if self.rungs else self.base_steps,
            "ranking_held": self.ranking_held(),
        }

    def ranking_held(self) -> bool:
        """Whether the highest rung picked what the search's short runs would have picked."""
        return not self.rungs or self.choice.chosen.variant == self.first_choice


# A study for a rung of ``steps`` steps, and the objective that trains at that length.
StudyAt = Callable[[int], SearchStudy]
ObjectiveAt = Callable[[int], Objective]


def climb(
    finalists: list[VariantScore],
    base_steps: int,
    first_choice: Choice,
    options: LadderOptions,
    plan: LRPlan,
    study_at: StudyAt,
    objective_at: ObjectiveAt,
    log: Log = ignore,
    challenger: Challenger | None = None,
) -> LadderOutcome:
    """Run the finalists (and the capacity ``challenger``, if any) up the rungs (see the module doc);
    ``first_choice`` is the search's own knee."""
    rungs: list[Rung] = []
    alive = [s.variant for s in finalists]
    choice = first_choice
    best_lr = {s.variant: s.learning_rate for s in finalists}
    # a variant's best LR at the rung below, when that sweep bracketed it: the ceiling here (lr.tune_lr)
    ceiling: dict[Variant, float | None] = {s.variant: _bracketed(s, plan) for s in finalists}
    wide: Variant | None = None
    if challenger is not None:
        wide = challenger.variant
        alive.append(wide)
        best_lr[wide] = challenger.first_lr(plan)
        ceiling[wide] = _bracketed(challenger.own, plan) if challenger.own is not None else None
    for steps in rung_steps(base_steps, options.top_steps):
        study, objective = study_at(steps), objective_at(steps)
        rung = Rung(steps, study.study.study_name)
        log(StageStarted(f"ladder: {len(alive)} variant(s) at {steps} steps"))
        _submit(study, [(v, best_lr[v]) for v in alive], plan, steps)
        swept = _sweep_rung(alive, best_lr, ceiling, steps, study, objective, plan, options, log)
        for v in alive:
            scored, edge = _scored(v, swept[v], steps, study, options, log)
            rung.scores.append(scored)
            rung.edges[v] = edge
            if math.isfinite(scored.score):
                best_lr[v] = scored.learning_rate
                ceiling[v] = scored.learning_rate if edge is None else None
        finite = [s for s in rung.scores if s.best.result is not None and math.isfinite(s.score)]
        if not finite:
            rungs.append(rung)
            break  # every run of this rung failed: the rung below stands
        rung.choice = choose(finite, cost=options.cost, tolerance=options.tolerance,
                             max_forgetting=options.max_forgetting)  # fmt: skip
        choice = rung.choice
        rungs.append(rung)
        ranked = sorted(finite, key=lambda s: (s.score, s.variant))
        keep = {s.variant for s in ranked[: survivors(len(ranked))]} | {choice.chosen.variant}
        if wide is not None and any(s.variant == wide for s in ranked):
            keep.add(wide)  # the challenger climbs to the top (module doc)
        alive = [s.variant for s in ranked if s.variant in keep]
    return LadderOutcome(base_steps, finalists, rungs, choice, first_choice.chosen.variant, wide)


def across_lengths(variant: Variant, levels: list[list[VariantScore]]) -> list[VariantScore | None]:
    """The variant's score at each level (the search's runs, then each rung), None where it did not run:
    one row of the ladder's table (the terminal's and the report's)."""
    return [next((s for s in level if s.variant == variant), None) for level in levels]


def sweep_edges(levels: list[list[VariantScore]], plan: LRPlan) -> list[dict[Variant, str | None]]:
    """``lr_edge`` of every variant's sweep, level by level (the search's runs, then each rung), with the
    ceiling each rung's sweep had: the variant's bracketed best LR one level down (what ``climb`` does)."""
    out: list[dict[Variant, str | None]] = []
    ceiling: dict[Variant, float | None] = {}
    for i, level in enumerate(levels):
        edges: dict[Variant, str | None] = {}
        for s in level:
            top = ceiling.get(s.variant) if i else None
            edges[s.variant] = lr_edge(s.tried, plan, ceiling=top)
        ceiling = {s.variant: _bracketed(s, plan) if i == 0 else (s.learning_rate if edges[s.variant] is None
                   else None) for s in level}  # fmt: skip
        out.append(edges)
    return out


def _bracketed(s: VariantScore, plan: LRPlan) -> float | None:
    """The variant's best LR when its runs bracket it (a worse run each side), else None."""
    return s.learning_rate if len(s.tried) >= 3 and lr_edge(s.tried, plan) is None else None


def _submit(study: SearchStudy, centers: list[tuple[Variant, float]], plan: LRPlan, steps: int) -> None:
    """With workers (a study that can ``submit``): every climber's sure runs at once — its center and the
    step below, as ``tune_lr(down_first=True)`` starts — so the rung's runs train side by side; each sweep
    then decides from its own runs only, and the rung's results are one worker's."""
    submit = getattr(study, "submit", None)
    if submit is None:
        return
    for v, center in centers:
        for lr in opening_lrs(plan, center, down_first=True):
            submit(RunConfig(v, lr, stage=f"ladder-{steps}"))


def _sweep_rung(
    alive: list[Variant],
    center: dict[Variant, float],
    ceiling: dict[Variant, float | None],
    steps: int,
    study: SearchStudy,
    objective: Objective,
    plan: LRPlan,
    options: LadderOptions,
    log: Log,
) -> dict[Variant, LRSweep]:
    """Every climber's LR sweep at this rung, from its best LR one level down and never above its ceiling
    (``tune_lr(down_first=True)``); with workers they walk side by side (``lr.sweep_side_by_side``)."""
    stage = f"ladder-{steps}"

    def loss_at(variant: Variant, lr: float) -> float:
        started = time.perf_counter()
        rec = study.run(RunConfig(variant, lr, stage=stage), objective)
        log(RunFinished(rec, time.perf_counter() - started, None))
        return rec.val_loss if options.metric == "loss" else metric_score(rec.result, options.metric)

    walks = {v: lr_walk(plan, plan.snap(center[v]), down_first=True, ceiling=ceiling[v]) for v in alive}
    if side_by_side(study, alive):
        return sweep_side_by_side(walks, lambda v, lr: RunConfig(v, lr, stage=stage), study, objective, loss_at)

    def alone(v: Variant) -> LRSweep:
        return drive(walks[v], lambda lr: loss_at(v, lr))

    return {v: alone(v) for v in alive}


def _scored(
    variant: Variant, sweep: LRSweep, steps: int, study: SearchStudy, options: LadderOptions, log: Log
) -> tuple[VariantScore, str | None]:
    stage = f"ladder-{steps}"
    runs = [r for r in study.finished() if r.variant == variant]
    scored = score_variants(runs, options.metric)
    if scored:
        log(VariantScored(variant, scored[0].ppl, sweep.best_lr, stage))
        return scored[0], sweep.edge
    log(VariantScored(variant, None, None, stage))
    return VariantScore(variant, runs[0], runs, options.metric), None
