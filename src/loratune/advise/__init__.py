"""Advice: a complete LoRA config from rules with sources, both sides where seed and literature
disagree, fitted to the user's VRAM. Pure Python over the anatomy — no torch."""

from loratune.advise.adalora import AdaLoraSchedule, adalora_schedule
from loratune.advise.datasize import DataCount, count_data
from loratune.advise.explain import Alternative, Explanation
from loratune.advise.fit import FitOutcome, FitStep, Knobs, fit_to_vram
from loratune.advise.presets import PRESETS, Preset, get_preset
from loratune.advise.recommend import GOALS, METHOD_CHOICES, RULE_SETS, AdviceInputs, Recommendation, recommend
from loratune.advise.rules import recommend_rank
from loratune.advise.tasks import TASK_CLASSES, TaskClass, TaskMapping, map_task

__all__ = [
    "GOALS",
    "METHOD_CHOICES",
    "PRESETS",
    "RULE_SETS",
    "TASK_CLASSES",
    "AdaLoraSchedule",
    "AdviceInputs",
    "Alternative",
    "DataCount",
    "Explanation",
    "FitOutcome",
    "FitStep",
    "Knobs",
    "Preset",
    "Recommendation",
    "TaskClass",
    "TaskMapping",
    "adalora_schedule",
    "count_data",
    "fit_to_vram",
    "get_preset",
    "map_task",
    "recommend",
    "recommend_rank",
]
