"""Budget: exact trainable parameters and the training-memory estimate, before any training."""

from loratune.budget.adapter_file import AdapterFile, read_adapter_file
from loratune.budget.params import ModuleBudget, ParamBudget, check_rank_fits, count_params
from loratune.budget.spec import METHODS, AdapterSpec

__all__ = [
    "METHODS",
    "AdapterFile",
    "AdapterSpec",
    "ModuleBudget",
    "ParamBudget",
    "check_rank_fits",
    "count_params",
    "read_adapter_file",
]
