"""Token lists → padded tensors, grouped by length so that padding wastes almost nothing.

Why length grouping and not packing: packing rows of unrelated examples needs a block-diagonal
attention mask, and SDPA on the CPU then still computes the full (packed length)² score matrix;
grouping similar lengths costs only a few % of padding and keeps the attention exact and cheap.
The sampler follows transformers' ``LengthGroupedSampler`` (megabatches of 50 batches, each sorted
by length) and puts the batch with the most tokens first, so the trial's peak memory shows early.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from loratune.data.types import IGNORE_INDEX
from loratune.errors import DataError

MEGABATCH = 50  # batches per sorted group, as in transformers.trainer_pt_utils.get_length_grouped_indices


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, T] long
    labels: torch.Tensor  # [B, T] long, IGNORE_INDEX on prompt and padding
    attention_mask: torch.Tensor | None  # None when every row has the same length (no padding)
    tokens: int  # real (non-padding) tokens
    label_tokens: int  # tokens that carry a loss (after the causal shift)

    def to(self, device: Any) -> Batch:
        if str(device) == "cpu":
            return self
        mask = None if self.attention_mask is None else self.attention_mask.to(device)
        return Batch(self.input_ids.to(device), self.labels.to(device), mask, self.tokens, self.label_tokens)


def as_examples(data: Any) -> list[Any]:
    """Accept ``TokenizedData`` or a list of ``TokenizedExample`` (anything with input_ids/labels)."""
    examples = list(getattr(data, "examples", data))
    for i, ex in enumerate(examples):
        if not hasattr(ex, "input_ids") or not hasattr(ex, "labels"):
            raise DataError(f"item {i} is a {type(ex).__name__}, not a tokenized example", "tokenize the data first")
        if len(ex.input_ids) != len(ex.labels):
            raise DataError(f"item {i} has {len(ex.input_ids)} input ids but {len(ex.labels)} labels", "re-tokenize")
    return examples


def usable(examples: Sequence[Any], max_length: int) -> list[Any]:
    """Examples with at least one label token after truncation and the causal shift."""
    return [ex for ex in examples if any(lab != IGNORE_INDEX for lab in ex.labels[1:max_length])]


def length_grouped_batches(
    examples: Sequence[Any], batch_size: int, *, seed: int, shuffle: bool = True
) -> list[list[int]]:
    """Index lists of ``batch_size`` examples of similar length (the last may be smaller)."""
    n = len(examples)
    order = list(range(n))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(order)
    group = batch_size * MEGABATCH
    batches: list[list[int]] = []
    for start in range(0, n, group):
        chunk = sorted(order[start : start + group], key=lambda i: len(examples[i].input_ids), reverse=True)
        batches.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
    if shuffle:
        rng.shuffle(batches)
    if batches:
        biggest = max(range(len(batches)), key=lambda b: max(len(examples[i].input_ids) for i in batches[b]))
        batches[0], batches[biggest] = batches[biggest], batches[0]
    return batches


def collate(examples: Sequence[Any], max_length: int, pad_id: int) -> Batch:
    """Right-pad to the longest row; labels padded with IGNORE_INDEX."""
    rows = [(list(ex.input_ids[:max_length]), list(ex.labels[:max_length])) for ex in examples]
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (row_ids, row_labels) in enumerate(rows):
        ids[r, : len(row_ids)] = torch.tensor(row_ids, dtype=torch.long)
        labels[r, : len(row_labels)] = torch.tensor(row_labels, dtype=torch.long)
        mask[r, : len(row_ids)] = 1
    tokens = int(mask.sum())
    label_tokens = int((labels[:, 1:] != IGNORE_INDEX).sum())
    return Batch(ids, labels, None if tokens == mask.numel() else mask, tokens, label_tokens)


def iterate(
    examples: Sequence[Any], batch_size: int, max_length: int, pad_id: int, *, seed: int = 0, shuffle: bool = True
) -> Iterator[Batch]:
    for idx in length_grouped_batches(examples, batch_size, seed=seed, shuffle=shuffle):
        yield collate([examples[i] for i in idx], max_length, pad_id)


def padding_fraction(batches: Sequence[Batch]) -> float:
    """Share of computed positions that are padding (0 = no waste)."""
    total = sum(b.input_ids.numel() for b in batches)
    return 1 - sum(b.tokens for b in batches) / total if total else 0.0
