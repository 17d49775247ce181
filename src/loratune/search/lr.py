"""Tune the learning rate per variant, briefly.

Comparing variants at one LR misleads: once LR is tuned per method, DoRA/PiSSA land within 1-2 % of
plain LoRA [Learning Rate Matters 2602.04998]. alpha/r acts like an LR multiplier [LoRA 2106.09685;
QLoRA 2305.14314], so each variant's sweep starts at the LR that keeps ``lr * scaling`` equal to the
baseline's, then walks a factor-``f`` ladder: center, center·f, then on in the direction that helps
until the best LR is *interior* (a worse run on each side of it) or the cap (``max_runs``, the user's
``--lr-runs``) is hit. Two runs can never bracket an optimum: a sweep that ends at an edge of its runs
says so (:func:`lr_edge`), and the report shows it. Every LR sits on the ladder ``base_lr · f^k`` so
identical runs share a cache key across strategies.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from loratune.errors import ConfigError
from loratune.search.space import RunConfig, Variant


@dataclass(frozen=True)
class LRPlan:
    base_lr: float = 2e-4
    base_scaling: float = 2.0  # the scaling base_lr was chosen for (alpha = 2r)
    factor: float = 2.0
    max_runs: int = 5  # cap on runs per variant; 1 = no sweep (the scaled center only)
    min_lr: float = 1e-6
    max_lr: float = 5e-2  # very short runs can want > 1e-2; a run that diverges is simply worse

    def __post_init__(self) -> None:
        if not self.base_lr > 0:
            raise ConfigError(f"learning rate must be positive, got {self.base_lr}", "use e.g. --lr 2e-4")
        if self.factor <= 1:
            raise ConfigError(f"LR sweep factor must be > 1, got {self.factor}", "use e.g. 2")
        if self.max_runs < 1:
            raise ConfigError(f"LR runs per variant must be >= 1, got {self.max_runs}", "use 1 (no sweep) to 3")

    def snap(self, lr: float) -> float:
        """The ladder point ``base_lr · factor^k`` nearest to ``lr`` (in log space), kept to the ladder
        points inside [min_lr, max_lr] so that snapping a snapped LR changes nothing."""
        step = math.log(self.factor)
        lo = math.ceil(math.log(self.min_lr / self.base_lr) / step - 1e-9)
        hi = math.floor(math.log(self.max_lr / self.base_lr) / step + 1e-9)
        k = min(hi, max(lo, round(math.log(lr / self.base_lr) / step)))
        return float(f"{self.base_lr * self.factor**k:.6g}")

    def center(self, variant: Variant) -> float:
        # Keep lr·scaling constant: with B initialised to zero, Adam's first updates move ΔW = s·BA by ≈ s·lr.
        return self.snap(self.base_lr * self.base_scaling / variant.scaling)


EDGES = ("cap", "bound")  # why a sweep's best LR sits at an edge of its runs: the run cap, or min/max_lr


def expected_runs(max_runs: int) -> int:
    """Runs a sweep usually makes (for ETAs and the time budget): three when the center is near the best
    (center, one step each way), never more than the cap."""
    return min(max_runs, 3)


@dataclass
class LRSweep:
    best_lr: float
    best_loss: float
    tried: dict[float, float]  # lr → val loss (inf when diverged/pruned/failed)
    edge: str | None = None  # None: the best LR is interior (or there was no sweep); else one of EDGES


def lr_edge(tried: dict[float, float], plan: LRPlan, *, ceiling: float | None = None) -> str | None:
    """Whether the best of these runs is *not* bracketed: "bound" when it sits at the plan's min/max LR,
    "cap" when it sits at an edge of the runs made (so the cap on runs stopped the walk), None when a
    worse run lies on each side of it (tuned) or the plan makes one run per variant (no sweep asked).
    ``ceiling``: an LR known to be at or above the best (a longer run's best LR never rises above the
    bracketed best of a shorter one, see :func:`tune_lr`), so a best at the top edge that equals it is
    bracketed. One rule, read by the sweep, the ladder and the report."""
    finite = {lr: loss for lr, loss in tried.items() if math.isfinite(loss)}
    if plan.max_runs < 2 or len(tried) < 2 or not finite:
        return None
    best = min(finite, key=lambda k: (finite[k], k))
    lrs = sorted(tried)
    if best not in (lrs[0], lrs[-1]) or (ceiling is not None and best == lrs[-1] and best >= ceiling):
        return None
    if best >= plan.snap(plan.max_lr) or best <= plan.snap(plan.min_lr):
        return "bound"
    return "cap"


def opening_lrs(plan: LRPlan, center: float, *, down_first: bool = False) -> list[float]:
    """The LRs every sweep from ``center`` runs whatever their results (:func:`tune_lr`'s first two): what a
    search with workers hands out at once."""
    step = 1 / plan.factor if down_first else plan.factor
    return [plan.snap(center)] + ([plan.snap(center * step)] if plan.max_runs >= 2 else [])


def tune_lr(
    evaluate: Callable[[float], float], plan: LRPlan, center: float, *, down_first: bool = False,
    ceiling: float | None = None,
) -> LRSweep:  # fmt: skip
    """Walk the ladder from ``center``: try center and its neighbour (center·f, or center/f when
    ``down_first``); keep going the way that helps until the best is bracketed or ``plan.max_runs`` runs
    were made. ``down_first`` suits a longer run of a variant tuned at a shorter one: the best LR falls as
    the token horizon grows [Bjorck et al., Scaling Optimal LR Across Token Horizons, arXiv:2409.19913].
    So with ``ceiling`` (that shorter run's bracketed best) the walk never goes above it: a center equal
    to the ceiling that beats the LR below it is tuned after two runs.

    ``evaluate(lr)`` returns the validation loss (inf for a diverged or failed run). The walk itself is
    :func:`lr_walk`, which several sweeps can step side by side.
    """
    return drive(lr_walk(plan, center, down_first=down_first, ceiling=ceiling), evaluate)


def drive(walk: Generator[float, float, LRSweep], evaluate: Callable[[float], float]) -> LRSweep:
    """Run one :func:`lr_walk` to its end, one run at a time."""
    try:
        lr = next(walk)
        while True:
            lr = walk.send(evaluate(lr))
    except StopIteration as done:
        return done.value


def sweep_side_by_side(
    walks: dict[Variant, Generator[float, float, LRSweep]],
    config_at: Callable[[Variant, float], RunConfig],
    study: Any,
    objective: Any,
    loss_at: Callable[[Variant, float], float],
) -> dict[Variant, LRSweep]:
    """Step several variants' :func:`lr_walk` s together on a study that hands runs out to workers
    (``submit``, ``first_finished``): each asked run goes out at once, and whichever finishes first moves
    its own sweep on. A sweep decides from its own runs only, so each ends where it would alone.
    ``loss_at(variant, lr)`` reads a finished run (through the study: cached, logged)."""
    asked = {v: next(w) for v, w in walks.items()}
    swept: dict[Variant, LRSweep] = {}
    while asked:
        configs = [config_at(v, lr) for v, lr in asked.items()]
        for c in configs:
            study.submit(c)
        done = study.first_finished(configs, objective)
        v = done.variant
        try:
            asked[v] = walks[v].send(loss_at(v, done.learning_rate))
        except StopIteration as end:
            swept[v] = end.value
            del asked[v]
    return swept


def side_by_side(study: Any, variants: list[Variant]) -> bool:
    """Whether these sweeps can walk together: a study with workers (``submit``, ``first_finished``) and
    more than one of them."""
    return len(variants) > 1 and hasattr(study, "submit") and hasattr(study, "first_finished")


def lr_walk(
    plan: LRPlan, center: float, *, down_first: bool = False, ceiling: float | None = None
) -> Generator[float, float, LRSweep]:
    """:func:`tune_lr`'s walk as a generator: it yields the next LR to run, is sent that run's validation
    loss, and returns the :class:`LRSweep` — so a stage can step several variants' sweeps at once, each
    deciding from its own runs exactly as it would alone."""
    tried: dict[float, float] = {}
    f = plan.factor
    for lr in opening_lrs(plan, center, down_first=down_first):
        if lr not in tried:
            loss = yield lr
            tried[lr] = loss if math.isfinite(loss) else math.inf
    if plan.max_runs >= 2:
        first = f if not down_first else 1 / f
        neighbour = tried[plan.snap(center * first)]
        direction = first if neighbour < tried[plan.snap(center)] else 1 / first
        probe = center * first if direction == first else center
        while len(tried) < plan.max_runs:
            if ceiling is not None and direction > 1 and plan.snap(probe * direction) > plan.snap(ceiling):
                break  # above what a shorter run already bracketed
            nxt = plan.snap(probe * direction)
            if nxt in tried:  # clipped at a bound
                break
            before = min(tried.values())
            loss = yield nxt
            tried[nxt] = loss if math.isfinite(loss) else math.inf
            if tried[nxt] >= before:
                break
            probe = nxt
    best_lr = min(tried, key=lambda k: (tried[k], k))
    return LRSweep(best_lr, tried[best_lr], tried, lr_edge(tried, plan, ceiling=ceiling))
