"""Plain data that crosses module boundaries: examples before and after tokenization."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FORMATS = ("auto", "prompt-response", "alpaca", "chat", "text", "classification")
IGNORE_INDEX = -100  # label value the loss ignores (PyTorch / transformers convention)


@dataclass(frozen=True)
class Example:
    """One training example. Plain text: ``prompt=""``, ``response=text``; chat: ``messages`` is set."""

    prompt: str
    response: str
    messages: tuple[dict[str, Any], ...] | None = None
    line: int = 0  # 1-based source row, for error messages


@dataclass
class TokenizedExample:
    """Token ids and labels of the same length; ``labels`` is -100 where no loss is taken."""

    input_ids: list[int]
    labels: list[int]
    line: int = 0


@dataclass(frozen=True)
class TokenStats:
    n_examples: int
    total_tokens: int
    label_tokens: int
    mean_length: float
    max_length: int
    p95_length: int
    truncated: int  # kept examples that were cut to max_length
    dropped: int = 0  # examples left with no label tokens after truncation (not in n_examples)
    # The shortest max_length that keeps one token of a dropped example's answer (0: none dropped).
    dropped_min_length: int = 0


@dataclass
class TokenizedData:
    examples: list[TokenizedExample] = field(default_factory=list)
    stats: TokenStats = field(default_factory=lambda: TokenStats(0, 0, 0, 0.0, 0, 0, 0, 0))
