"""The search's data: tokenized train / validation / reference lists through ``loratune.trial.data_prep``,
the same functions (and the same reference set) ``loratune train`` uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loratune.errors import DataError


@dataclass
class SearchData:
    path: str
    train: list[Any]
    val: list[Any]
    reference: list[Any]
    val_path: str | None = None  # the --val-data file, when validation is not split off --data


def load_search_data(
    data: str,
    tokenizer: Any,
    *,
    max_length: int,
    seed: int,
    val_examples: int,
    reference: str | None = None,
    val_data: str | None = None,
) -> SearchData:
    """Tokenize ``data`` (a file or ``demo``); validation is ``val_data`` when given, else 10 % split off
    (seeded). Keep ``val_examples`` of it (the same subset for every run) and read reference text
    (``demo``, a file, or none) exactly as ``train`` does: data_prep's passages, cut to its length."""
    from loratune.trial.data_prep import REFERENCE_MAX_TOKENS, prepare, read
    from loratune.trial.data_prep import reference as read_reference

    raw = read(data, val_data=val_data)
    prepared = prepare(raw, tokenizer, max_length=max_length, val_fraction=0.1, seed=seed)
    train, val = prepared.train, prepared.val
    if val_data and not val:
        raise DataError(f"{val_data} gave no validation examples", "check the file and its format")
    if not train or not val:
        raise DataError(f"{prepared.path} is too small to split into train and validation", "give at least 10 examples")
    ref = read_reference(reference, tokenizer, max_length=min(max_length, REFERENCE_MAX_TOKENS))
    val_path = str(resolve(val_data)) if val_data else None
    return SearchData(prepared.path, list(train), list(val[:val_examples]), ref, val_path)


def resolve(path: str) -> Any:
    from loratune.data import resolve_data_arg

    return resolve_data_arg(path)
