"""One training trial: build the PEFT model, train, evaluate, measure, save the adapter.

``TrainSettings`` and ``TrialResult`` are plain values (no torch). ``TrialRunner`` and the
evaluation helpers import torch, so they are loaded on first use: ``import loratune.trial``
stays cheap for the CLI's ``--help`` and for the search stage's planning code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loratune.trial.types import COMPUTE_DTYPES, SCHEDULERS, STATUSES, TrainSettings, TrialResult

if TYPE_CHECKING:
    from loratune.trial.evaluate import QAScores, perplexity, qa_scores
    from loratune.trial.runner import TrialRunner

_LAZY = {
    "TrialRunner": "loratune.trial.runner",
    "perplexity": "loratune.trial.evaluate",
    "qa_scores": "loratune.trial.evaluate",
    "QAScores": "loratune.trial.evaluate",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'loratune.trial' has no attribute {name!r}")


__all__ = [
    "COMPUTE_DTYPES",
    "SCHEDULERS",
    "STATUSES",
    "QAScores",
    "TrainSettings",
    "TrialResult",
    "TrialRunner",
    "perplexity",
    "qa_scores",
]
