"""From a ``--data`` argument to tokenized train/val/reference lists (shared by train and eval)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loratune.errors import DataError

# Forgetting is measured on 16 general-prose passages cut to 256 tokens (~4k tokens): the same fixed
# set before and after, so the difference is stable, at a few seconds per evaluation on the CPU.
REFERENCE_LIMIT = 16
REFERENCE_MAX_TOKENS = 256


@dataclass
class PreparedData:
    train: list[Any]  # tokenized training rows
    val: list[Any]  # tokenized validation rows
    stats: Any  # TokenStats of the training rows
    path: str
    val_stats: Any = None  # TokenStats of the validation rows
    train_examples: list[Any] = field(default_factory=list)  # the examples before tokenizing
    val_examples: list[Any] = field(default_factory=list)


@dataclass
class RawData:
    examples: list[Any]
    val_examples: list[Any] | None
    path: str


def read(
    data: str,
    *,
    format: str = "auto",
    prompt_column: str = "prompt",
    response_column: str = "response",
    val_data: str | None = None,
) -> RawData:
    """Read (and check) the files before any model is loaded, so a bad path fails in a second."""
    from loratune.data import load_examples, resolve_data_arg

    path = resolve_data_arg(data)
    cols = {"format": format, "prompt_column": prompt_column, "response_column": response_column}
    val = load_examples(resolve_data_arg(val_data), **cols) if val_data else None
    return RawData(load_examples(path, **cols), val, str(path))


def prepare(
    raw: RawData, tokenizer: Any, *, max_length: int = 512, val_fraction: float = 0.1, seed: int = 0
) -> PreparedData:
    """Split off validation by example (unless a separate validation file was given), then tokenize
    each side.

    The split is taken on the examples as read, before tokenizing: it depends on the number of
    examples and the seed only, so ``--max-length`` (which cuts and drops rows) cannot move an
    example from one side to the other, and ``eval --split val`` at any length scores only rows
    that ``train`` held out.
    """
    from loratune.data import split_train_val, tokenize_examples

    if raw.val_examples is not None:
        train_raw, val_raw = list(raw.examples), list(raw.val_examples)
    else:
        train_raw, val_raw = split_train_val(raw.examples, val_fraction=val_fraction, seed=seed)
    train = tokenize_examples(train_raw, tokenizer, max_length=max_length)
    val = tokenize_examples(val_raw, tokenizer, max_length=max_length)
    if not train.examples:
        if train.stats.dropped:
            need = train.stats.dropped_min_length
            raise DataError(
                f"{raw.path}: --max-length {max_length} cuts away the answer of every training example "
                f"({train.stats.dropped} of {len(train_raw)}); the shortest needs {need} tokens",
                f"raise --max-length to at least {need} (e.g. 512)",
            )
        raise DataError(f"{raw.path} gave no training examples", "check the file and --format")
    return PreparedData(list(train.examples), list(val.examples), train.stats, raw.path, val.stats, train_raw, val_raw)


def reference_examples(text: str | None, *, limit: int = REFERENCE_LIMIT) -> list[Any]:
    """The first ``limit`` plain-text reference passages as examples (``demo`` = the built-in
    general-prose set; ``none`` = skip). Reads only: cheap, so the CLI checks the path before loading."""
    if not text or text.lower() == "none":
        return []
    from loratune.data import demo_reference_path, load_examples, resolve_data_arg

    path = demo_reference_path() if text == "demo" else resolve_data_arg(text)
    return load_examples(path, format="text")[:limit]


def tokenize_reference(examples: list[Any], tokenizer: Any, *, max_length: int = REFERENCE_MAX_TOKENS) -> list[Any]:
    from loratune.data import tokenize_examples

    return list(tokenize_examples(examples, tokenizer, max_length=max_length).examples) if examples else []


def reference(
    text: str | None, tokenizer: Any, *, max_length: int = REFERENCE_MAX_TOKENS, limit: int = REFERENCE_LIMIT
) -> list[Any]:
    """Tokenized reference passages: :func:`reference_examples`, then :func:`tokenize_reference`."""
    return tokenize_reference(reference_examples(text, limit=limit), tokenizer, max_length=max_length)
