"""The search's data: tokenized train / validation / reference lists through ``loratune.data``'s API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loratune.errors import DataError

REFERENCE_LIMIT = 64  # reference passages for forgetting: a stable mean, cheap to evaluate


@dataclass
class SearchData:
    path: str
    train: list[Any]
    val: list[Any]
    reference: list[Any]


def load_search_data(
    data: str, tokenizer: Any, *, max_length: int, seed: int, val_examples: int, reference: str | None = None
) -> SearchData:
    """Tokenize ``data`` (a file or ``demo``), split off 10 % for validation (seeded), keep ``val_examples``
    of it (the same subset for every run), and read reference text (``demo``, a file, or none)."""
    from loratune.data import (
        demo_reference_path,
        load_examples,
        resolve_data_arg,
        split_train_val,
        tokenize_examples,
    )

    path = resolve_data_arg(data)
    tokenized = tokenize_examples(load_examples(path), tokenizer, max_length=max_length)
    train, val = split_train_val(tokenized.examples, val_fraction=0.1, seed=seed)
    if not train or not val:
        raise DataError(f"{path} is too small to split into train and validation", "give at least 10 examples")
    ref: list[Any] = []
    if reference and reference.lower() != "none":
        ref_path = demo_reference_path() if reference == "demo" else resolve_data_arg(reference)
        examples = load_examples(ref_path, format="text")[:REFERENCE_LIMIT]
        ref = list(tokenize_examples(examples, tokenizer, max_length=max_length).examples)
    return SearchData(str(path), list(train), list(val[:val_examples]), ref)
