"""Budget: exact trainable parameters and the training-memory estimate, before any training."""

from loratune.budget.params import ModuleBudget, ParamBudget, count_params
from loratune.budget.spec import METHODS, AdapterSpec

__all__ = ["METHODS", "AdapterSpec", "ModuleBudget", "ParamBudget", "count_params"]
