"""What the user tells ``recommend``: plain values, validated once."""

from __future__ import annotations

from dataclasses import dataclass

from loratune.budget.memory import MAX_SEQ_LEN
from loratune.errors import ConfigError
from loratune.units import check_count

RULE_SETS = ("combined", "seed", "literature")
GOALS = ("balanced", "quality", "memory")
METHOD_CHOICES = ("auto", "lora", "dora", "adalora")
MICRO_BATCH_START = 4  # small micro-batches; gradient accumulation makes up the effective batch


@dataclass(frozen=True)
class AdviceInputs:
    task: str | None = None  # a class name or free text (tasks.py); None → simple-qa
    dataset_size: int | None = None
    dataset_tokens: int | None = None  # counted from --data; else assumed seq_len/2 per example
    tokens_note: str = ""
    vram_bytes: int | None = None
    goal: str = "balanced"
    protect_knowledge: bool = False
    preset: str | None = None
    rules: str = "combined"
    method: str = "auto"
    layers: tuple[int, ...] | None = None  # explicit layers_to_transform
    seq_len: int = 512
    dtype: str = "bf16"
    total_steps: int | None = None  # the run's optimizer steps if the caller knows them (search); else the schedule's


def check_inputs(inputs: AdviceInputs) -> None:
    for value, allowed, what in (
        (inputs.rules, RULE_SETS, "--rules"),
        (inputs.goal, GOALS, "--goal"),
        (inputs.method, METHOD_CHOICES, "--method"),
    ):
        if value not in allowed:
            raise ConfigError(f"unknown {what} value {value!r}", f"use one of {', '.join(allowed)}")
    if inputs.dataset_size is not None:
        check_count(inputs.dataset_size, "dataset size (--dataset-size)", MAX_EXAMPLES, "use e.g. --dataset-size 1000")
    if inputs.vram_bytes is not None and inputs.vram_bytes <= 0:
        raise ConfigError(f"VRAM must be positive, got {inputs.vram_bytes} bytes", "use e.g. --vram 8GB")
    check_count(inputs.seq_len, "sequence length (--seq-len)", MAX_SEQ_LEN, "use e.g. --seq-len 512")
    if inputs.total_steps is not None:
        check_count(inputs.total_steps, "total steps", MAX_EXAMPLES, "leave it unset to use the schedule")


# A trillion examples is more than any fine-tuning set (pre-training corpora count tokens, not examples).
MAX_EXAMPLES = 10**12
