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
    from loratune.trial.data_prep import prepare, read
    from loratune.trial.data_prep import reference as read_reference

    prepared = prepare(read(data), tokenizer, max_length=max_length, val_fraction=0.1, seed=seed)
    train, val = prepared.train, prepared.val
    if not train or not val:
        raise DataError(f"{prepared.path} is too small to split into train and validation", "give at least 10 examples")
    ref = read_reference(reference, tokenizer, max_length=max_length, limit=REFERENCE_LIMIT)
    return SearchData(prepared.path, list(train), list(val[:val_examples]), ref)
