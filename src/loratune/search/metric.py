"""Which validation number a search ranks by: ``loss`` (perplexity, lower is better; the default), or for
classifiers ``accuracy`` / ``f1`` (macro-F1, higher is better).

Every comparison in the knee and the staged stages is relative ("within 1 % of the best", "doubling r
must gain ≥ 1 %"). They work on one lower-is-better *score*: perplexity for ``loss``, and 1 / value for
accuracy and F1, so that a ratio of scores is the ratio of accuracies — "within 1 %" means
accuracy ≥ best / 1.01, and a rank that raises accuracy by 1 % relative gains 1 %.
"""

from __future__ import annotations

import math

from loratune.errors import ConfigError
from loratune.trial.types import TrialResult

METRICS = ("loss", "accuracy", "f1")
LABELS = {"loss": "validation perplexity", "accuracy": "validation accuracy", "f1": "validation macro-F1"}


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}", f"use one of {', '.join(METRICS)}")
    return metric


def higher_is_better(metric: str) -> bool:
    return check_metric(metric) != "loss"


def metric_value(result: TrialResult | None, metric: str) -> float | None:
    """The run's value of ``metric`` after training (perplexity for loss); None when it has none."""
    if result is None or result.status != "ok":
        return None
    if metric == "loss":
        v = result.val_loss_after
        return math.exp(v) if v is not None and math.isfinite(v) else None
    v = result.val_accuracy_after if metric == "accuracy" else result.val_f1_after
    return v if v is not None and math.isfinite(v) else None


def metric_score(result: TrialResult | None, metric: str) -> float:
    """Lower is better: perplexity, or 1 / accuracy (1 / F1; 0 counts as 1e-6); inf when the run has no value."""
    v = metric_value(result, check_metric(metric))
    if v is None:
        return math.inf
    if metric == "loss":
        return v
    return 1.0 / max(v, FLOOR)  # accuracy 0 is the worst finite score, not "no result"


FLOOR = 1e-6
