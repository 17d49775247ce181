"""Classification data for a trial: the seeded split, the label check, tokenizing (pairs as the tokenizer
joins them), length-grouped batches and right-padded tensors. Used by ``trial.seq_cls``, ``train``,
``eval`` and the search."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from loratune.data.classification import ClsExample, ClsRaw, check_labels, class_counts
from loratune.errors import DataError


@dataclass
class ClsRow:
    """One tokenized classification example: ids (and BERT's segment ids for pairs) and a label id."""

    input_ids: list[int]
    label: int
    token_type_ids: list[int] | None = None
    line: int = 0


@dataclass
class ClsData:
    train: list[ClsRow]
    val: list[ClsRow]
    labels: tuple[str, ...]
    path: str
    train_counts: dict[str, int] = field(default_factory=dict)
    val_counts: dict[str, int] = field(default_factory=dict)
    truncated: int = 0


def split_cls(raw: ClsRaw, *, val_fraction: float = 0.1, seed: int = 0) -> tuple[list[ClsExample], list[ClsExample]]:
    """The same seeded split as generation data (``data.split``), unless a validation file was given."""
    from loratune.data import split_train_val

    if raw.val_examples is not None:
        return list(raw.examples), list(raw.val_examples)
    return split_train_val(raw.examples, val_fraction=val_fraction, seed=seed)


def labels_of(raw: ClsRaw, *, val_fraction: float = 0.1, seed: int = 0) -> tuple[str, ...]:
    """The label set (training split), checked against validation: what the classifier head is built for."""
    train, val = split_cls(raw, val_fraction=val_fraction, seed=seed)
    return check_labels(train, val, where=raw.path)


def prepare_cls(
    raw: ClsRaw,
    tokenizer: Any,
    *,
    max_length: int = 512,
    val_fraction: float = 0.1,
    seed: int = 0,
    labels: Sequence[str] | None = None,
) -> ClsData:
    """Split, check the labels, tokenize both sides (pairs as the tokenizer joins them: BERT's [SEP])."""
    train_ex, val_ex = split_cls(raw, val_fraction=val_fraction, seed=seed)
    found = check_labels(train_ex, val_ex, where=raw.path)
    if labels is not None and tuple(labels) != found:
        raise DataError(
            f"{raw.path}: labels {', '.join(found)} differ from the adapter's {', '.join(labels)}",
            "evaluate on data with the labels the adapter was trained on",
        )
    ids = {label: i for i, label in enumerate(found)}
    train, cut_t = tokenize_cls(train_ex, tokenizer, ids, max_length)
    val, cut_v = tokenize_cls(val_ex, tokenizer, ids, max_length)
    return ClsData(
        train, val, found, raw.path, class_counts(train_ex, found), class_counts(val_ex, found), cut_t + cut_v
    )


def tokenize_cls(
    examples: Sequence[ClsExample], tokenizer: Any, label_ids: dict[str, int], max_length: int
) -> tuple[list[ClsRow], int]:
    if max_length < 2:
        raise DataError(f"max length must be at least 2 tokens, got {max_length}", "pass e.g. --max-length 128")
    rows: list[ClsRow] = []
    truncated = 0
    for ex in examples:
        full = tokenizer(ex.text, ex.text_pair, truncation=False)
        enc = tokenizer(ex.text, ex.text_pair, truncation=True, max_length=max_length)
        truncated += len(full["input_ids"]) > len(enc["input_ids"])
        types = enc.get("token_type_ids")
        rows.append(ClsRow(list(enc["input_ids"]), label_ids[ex.label], list(types) if types else None, ex.line))
    return rows, truncated


def batches(rows: Sequence[ClsRow], batch_size: int, *, seed: int, shuffle: bool = True) -> Iterator[list[ClsRow]]:
    """Length-grouped batches: shuffled, sorted by length within windows of 16 batches, batches shuffled."""
    order = list(range(len(rows)))
    if shuffle:
        random.Random(seed).shuffle(order)
    window = batch_size * 16
    out: list[list[ClsRow]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: len(rows[i].input_ids))
        out += [[rows[i] for i in chunk[k : k + batch_size]] for k in range(0, len(chunk), batch_size)]
    if shuffle:
        random.Random(seed + 1).shuffle(out)
    yield from out


def collate(rows: Sequence[ClsRow], pad_id: int, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Right-padded tensors; a decoder classifier finds its last real token from the pad id."""
    longest = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r.input_ids)] = torch.tensor(r.input_ids)
        mask[i, : len(r.input_ids)] = 1
    out = {"input_ids": ids, "attention_mask": mask}
    if rows[0].token_type_ids is not None:
        types = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, r in enumerate(rows):
            types[i, : len(r.input_ids)] = torch.tensor(r.token_type_ids or [0] * len(r.input_ids))
        out["token_type_ids"] = types
    out["labels"] = torch.tensor([r.label for r in rows], dtype=torch.long)
    return {k: v.to(device) for k, v in out.items()}
