"""The knee: the cheapest variant whose validation perplexity is within a tolerance of the best.

The seed's last step ("choose the best balance of quality, memory and speed", 000 §4.2) made
mechanical: quality first (within ``tolerance`` of the best), then the lowest cost. Forgetting —
the rise of perplexity on reference text the adapter was not trained on — can rule variants out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from loratune.errors import ConfigError
from loratune.search.metric import LABELS, metric_score, metric_value
from loratune.search.space import Variant
from loratune.search.study import TrialRecord
from loratune.units import fmt_bytes, fmt_count

COSTS = ("params", "memory", "time")


@dataclass
class VariantScore:
    """A variant at its best learning rate (LR tuned per variant)."""

    variant: Variant
    best: TrialRecord
    runs: list[TrialRecord] = field(default_factory=list)
    metric: str = "loss"  # what ranks variants (search/metric.py); perplexity for loss

    @property
    def ppl(self) -> float:
        return self.best.val_ppl

    @property
    def tried(self) -> dict[float, float]:
        """Learning rate → validation loss of this variant's runs (inf for a failed or pruned one)."""
        return {float(r.learning_rate): r.val_loss for r in self.runs if r.learning_rate}

    @property
    def score(self) -> float:
        """Lower is better: the perplexity, or 1 / accuracy (F1) when the search ranks by those."""
        return self.ppl if self.metric == "loss" else metric_score(self.best.result, self.metric)

    @property
    def value(self) -> float:
        """The ranking metric's own value (perplexity, accuracy or F1)."""
        v = metric_value(self.best.result, self.metric)
        return v if v is not None else math.inf

    @property
    def runs_trained(self) -> int:
        """Runs of this variant that trained (not those a resume or a repeat answered from the cache)."""
        return sum(1 for r in self.runs if r.cached_study is None)

    @property
    def learning_rate(self) -> float:
        return float(self.best.learning_rate or 0.0)

    @property
    def forgetting(self) -> float | None:
        """Relative rise of reference perplexity (0.05 = 5 % worse on text it was not trained on)."""
        r = self.best.result
        if r is None or not r.ref_ppl_before or r.ref_ppl_after is None:
            return None
        return r.ref_ppl_after / r.ref_ppl_before - 1.0

    def cost(self, kind: str) -> float:
        r = self.best.result
        if r is None:
            return math.inf
        if kind == "params":
            return float(r.trainable_params)
        if kind == "memory":
            measured = r.peak_memory_bytes or r.estimated_memory_bytes
            return float(measured) if measured else math.inf
        if kind == "time":  # seconds per training token: equal budgets make it the run's speed
            return 1.0 / r.tokens_per_second if r.tokens_per_second else math.inf
        raise ConfigError(f"unknown cost {kind!r}", f"use one of {', '.join(COSTS)}")

    def describe_cost(self, kind: str) -> str:
        c = self.cost(kind)
        if not math.isfinite(c):
            return "n/a"
        if kind == "params":
            return f"{fmt_count(int(c))} params"
        if kind == "memory":
            return fmt_bytes(c)
        return f"{c * 1000:.3f} ms/token"


def score_variants(records: Iterable[TrialRecord], metric: str = "loss") -> list[VariantScore]:
    """Group runs by variant; each variant is scored at its best LR (by ``metric``, ties to the lower loss).
    Variants with no finite result drop out."""
    groups: dict[Variant, list[TrialRecord]] = {}
    for rec in records:
        if rec.variant is not None and rec.result is not None:
            groups.setdefault(rec.variant, []).append(rec)
    out = []
    for variant, runs in groups.items():
        if metric == "loss":
            best = min(runs, key=lambda r: (r.val_loss, r.number))
        else:
            best = min(runs, key=lambda r: (metric_score(r.result, metric), r.val_loss, r.number))
        if math.isfinite(best.val_loss) and math.isfinite(VariantScore(variant, best, runs, metric).score):
            out.append(VariantScore(variant, best, runs, metric))
    return sorted(out, key=lambda s: (s.score, s.variant))


@dataclass
class Choice:
    chosen: VariantScore
    best: VariantScore
    eligible: list[VariantScore]
    ruled_out: list[VariantScore]  # by --max-forgetting
    cost: str
    tolerance: float
    max_forgetting: float | None

    def reason(self) -> str:
        c, b = self.chosen, self.best
        if c.metric != "loss":
            return self._metric_reason()
        if c.variant == b.variant:
            text = (
                f"{c.variant.label()} has the best validation perplexity ({c.ppl:.4f}) and no variant within "
                f"{self.tolerance:.1%} of it costs less ({c.describe_cost(self.cost)})."
            )
        else:
            gap = c.ppl / b.ppl - 1
            text = (
                f"{c.variant.label()} is the cheapest of the {len(self.eligible)} variants within "
                f"{self.tolerance:.1%} of the best perplexity ({b.ppl:.4f}, {b.variant.label()}): "
                f"perplexity {c.ppl:.4f} (+{gap:.2%}) for {c.describe_cost(self.cost)} instead of "
                f"{b.describe_cost(self.cost)}."
            )
        if self.max_forgetting is not None:
            text += (
                f" {len(self.ruled_out)} variant(s) were ruled out for forgetting more than {self.max_forgetting:.1%}."
            )
        return text + f" Learning rate {c.learning_rate:g} (tuned for this variant)."

    def _metric_reason(self) -> str:
        c, b, what = self.chosen, self.best, LABELS[self.chosen.metric]
        if c.variant == b.variant:
            text = (
                f"{c.variant.label()} has the best {what} ({c.value:.4f}) and no variant within "
                f"{self.tolerance:.1%} of it costs less ({c.describe_cost(self.cost)})."
            )
        else:
            text = (
                f"{c.variant.label()} is the cheapest of the {len(self.eligible)} variants within "
                f"{self.tolerance:.1%} of the best {what} ({b.value:.4f}, {b.variant.label()}): "
                f"{c.value:.4f} for {c.describe_cost(self.cost)} instead of {b.describe_cost(self.cost)}."
            )
        return text + f" Learning rate {c.learning_rate:g} (tuned for this variant)."

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.chosen.metric,
            "chosen": _score_dict(self.chosen, self.cost),
            "best": _score_dict(self.best, self.cost),
            "eligible": [s.variant.label() for s in self.eligible],
            "ruled_out_for_forgetting": [s.variant.label() for s in self.ruled_out],
            "cost": self.cost,
            "tolerance": self.tolerance,
            "max_forgetting": self.max_forgetting,
            "reason": self.reason(),
        }


def _score_dict(s: VariantScore, cost: str) -> dict[str, Any]:
    return {
        "variant": s.variant.to_dict(),
        "label": s.variant.label(),
        "learning_rate": s.learning_rate,
        "val_ppl": s.ppl,
        **({s.metric: s.value} if s.metric != "loss" else {}),
        "cost": s.cost(cost),
        "trainable_params": s.best.result.trainable_params if s.best.result else None,
        "forgetting": s.forgetting,
        # the run's key in the study, not its trial number: with workers, numbers follow the order runs were
        # handed out, and best_config.json must be the one a single worker writes
        "run": s.best.key,
    }


def choose(
    scores: list[VariantScore], *, cost: str = "params", tolerance: float = 0.01, max_forgetting: float | None = None
) -> Choice:
    """The cheapest variant within ``tolerance`` (relative) of the best perplexity; ties go to lower perplexity."""
    if cost not in COSTS:
        raise ConfigError(f"unknown cost {cost!r}", f"use one of {', '.join(COSTS)}")
    if not tolerance >= 0:
        raise ConfigError(f"tolerance must be >= 0, got {tolerance}", "use e.g. 0.01 (1 %)")
    if not scores:
        raise ConfigError("no trial finished with a finite validation loss", "check the trial messages; lower the LR")
    feasible, ruled_out = list(scores), []
    if max_forgetting is not None:
        feasible = [s for s in scores if s.forgetting is None or s.forgetting <= max_forgetting]
        ruled_out = [s for s in scores if s not in feasible]
        if not feasible:
            least = min(s.forgetting or 0.0 for s in scores)
            raise ConfigError(
                f"every variant forgets more than {max_forgetting:.1%} (least: {least:.1%})",
                "raise --max-forgetting or search lower ranks / fewer modules",
            )
    # score = perplexity, or 1 / accuracy (F1) for a classifier's metric: "within tolerance" is relative either way
    best = min(feasible, key=lambda s: (s.score, s.cost(cost)))
    eligible = [s for s in feasible if s.score <= best.score * (1 + tolerance)]
    chosen = min(eligible, key=lambda s: (s.cost(cost), s.score))
    return Choice(chosen, best, eligible, ruled_out, cost, tolerance, max_forgetting)


def pareto_front(scores: list[VariantScore], cost: str) -> list[VariantScore]:
    """Variants no other beats on both cost and perplexity, cheapest first."""
    front: list[VariantScore] = []
    for s in sorted(scores, key=lambda s: (s.cost(cost), s.score)):
        if not front or s.score < front[-1].score:
            front.append(s)
    return front
