"""Search: staged (the seed's method, automated) and Optuna strategies over persisted, cached trials,
and the knee that picks the cheapest config within a tolerance of the best.

Optuna and torch are imported only when a study is opened or a trial runs, never at import time.
"""

from loratune.search.config import SearchConfig, study_fingerprint, trial_code_hash
from loratune.search.knee import COSTS, Choice, VariantScore, choose, pareto_front, score_variants
from loratune.search.lr import LRPlan, LRSweep, tune_lr
from loratune.search.optuna_strategy import PRUNERS, OptunaOptions, optuna_search
from loratune.search.run import SearchInputs, SearchResult, choose_for, load_inputs, run_search
from loratune.search.space import RunConfig, Variant, fingerprint
from loratune.search.staged import SearchOutcome, StagedOptions, StagedSearch, StageLog
from loratune.search.study import Objective, SearchStudy, TrialRecord, default_storage, run_counts

__all__ = [
    "COSTS",
    "PRUNERS",
    "Choice",
    "LRPlan",
    "LRSweep",
    "Objective",
    "OptunaOptions",
    "RunConfig",
    "SearchConfig",
    "SearchInputs",
    "SearchResult",
    "SearchOutcome",
    "SearchStudy",
    "StageLog",
    "StagedOptions",
    "StagedSearch",
    "TrialRecord",
    "Variant",
    "VariantScore",
    "choose",
    "choose_for",
    "default_storage",
    "fingerprint",
    "load_inputs",
    "optuna_search",
    "pareto_front",
    "run_counts",
    "run_search",
    "score_variants",
    "study_fingerprint",
    "trial_code_hash",
    "tune_lr",
]
