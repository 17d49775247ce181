"""Perplexity over label tokens, and exact match / token F1 of greedy answers for QA data."""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from loratune.data.types import IGNORE_INDEX
from loratune.trial.batching import as_examples, iterate, usable
from loratune.trial.loss import split_decoder_head, token_loss_sum
from loratune.trial.speed import autocast, model_compute_dtype

PUNCTUATION = frozenset(string.punctuation)


def mean_loss(
    model: Any,
    data: Any,
    *,
    pad_id: int,
    batch_size: int = 8,
    max_length: int = 512,
    max_batches: int | None = None,
    on_batch: Callable[[], None] | None = None,
) -> float:
    """Mean next-token cross-entropy (nats) over every label token of ``data``.

    Token-weighted, not batch-weighted: each label token counts once, so the value does not
    depend on how examples were grouped into batches. ``max_batches`` evaluates a fixed prefix
    (batches are formed deterministically, unshuffled), so repeated calls compare like with like.
    ``on_batch`` is called after each batch (progress; :func:`count_batches` gives the total).
    """
    examples = usable(as_examples(data), max_length)
    if not examples:
        return math.nan
    parts = split_decoder_head(model)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    # A bf16 base is evaluated under the same autocast it is trained with, so the loss a trial
    # reports and the loss of the reloaded adapter agree to float precision.
    device = batch_device(model)
    with torch.inference_mode(), autocast(model_compute_dtype(model), str(device)):
        for i, batch in enumerate(iterate(examples, batch_size, max_length, pad_id, shuffle=False)):
            if max_batches is not None and i >= max_batches:
                break
            batch = batch.to(device)
            loss_sum, n = token_loss_sum(model, batch.input_ids, batch.labels, batch.attention_mask, parts)
            total += float(loss_sum)
            count += n
            if on_batch is not None:
                on_batch()
    model.train(was_training)
    return total / count if count else math.nan


def count_batches(data: Any, *, batch_size: int = 8, max_length: int = 512, max_batches: int | None = None) -> int:
    """How many batches :func:`mean_loss` runs over ``data`` with these arguments."""
    n = math.ceil(len(usable(as_examples(data), max_length)) / batch_size)
    return n if max_batches is None else min(n, max_batches)


def batch_device(model: Any) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def perplexity(model: Any, data: Any, *, pad_id: int, **kwargs: Any) -> float:
    """exp(mean token cross-entropy); inf when the loss overflows."""
    value = safe_exp(mean_loss(model, data, pad_id=pad_id, **kwargs))
    return math.nan if value is None else value


def safe_exp(loss: float | None) -> float | None:
    if loss is None or math.isnan(loss):
        return None if loss is None else math.nan
    return math.exp(loss) if loss < 700 else math.inf


# SQuAD v1.1 evaluation script (Rajpurkar et al. 2016): lowercase, drop punctuation and the
# articles a/an/the, collapse whitespace; F1 over the bag of remaining tokens.
def normalize_answer(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


@dataclass
class QAScores:
    exact_match: float  # mean over examples, 0..1
    token_f1: float  # mean over examples, 0..1
    n: int
    samples: list[tuple[str, str]]  # (prediction, reference) for the first few, to show


def qa_examples(data: Any, limit: int | None = None) -> list[Any]:
    """The examples :func:`qa_scores` decodes: those with an answer (a label token), the first ``limit``."""
    examples = [ex for ex in as_examples(data) if any(lab != IGNORE_INDEX for lab in ex.labels)]
    return examples if limit is None else examples[:limit]


def qa_scores(
    model: Any,
    tokenizer: Any,
    data: Any,
    *,
    limit: int | None = 50,
    max_new_tokens: int | None = None,
    keep_samples: int = 3,
    on_answer: Callable[[], None] | None = None,
) -> QAScores:
    """Greedy-decode each answer from its prompt and compare with the reference answer.

    The prompt is the token prefix before the first label token (so the chat template the data was
    tokenized with is reused exactly); the reference is the decoded label tokens. Decoding stops at
    EOS or after ``max_new_tokens`` (default: reference length + 16).
    """
    examples = qa_examples(data, limit)
    was_training = model.training
    model.eval()
    em, f1 = 0.0, 0.0
    samples: list[tuple[str, str]] = []
    eos = tokenizer.eos_token_id
    with torch.inference_mode():
        for ex in examples:
            start = next(i for i, lab in enumerate(ex.labels) if lab != IGNORE_INDEX)
            answer_ids = [t for t in ex.labels[start:] if t != IGNORE_INDEX]
            reference = tokenizer.decode(answer_ids, skip_special_tokens=True).strip()
            budget = max_new_tokens or len(answer_ids) + 16
            prediction = tokenizer.decode(
                greedy(model, ex.input_ids[:start], budget, eos), skip_special_tokens=True
            ).strip()
            em += exact_match(prediction, reference)
            f1 += token_f1(prediction, reference)
            if len(samples) < keep_samples:
                samples.append((prediction, reference))
            if on_answer is not None:
                on_answer()
    model.train(was_training)
    n = len(examples)
    return QAScores(em / n if n else math.nan, f1 / n if n else math.nan, n, samples)


def greedy(model: Any, prompt_ids: Sequence[int], max_new_tokens: int, eos: int | None) -> list[int]:
    """Greedy decoding with the KV cache, one sequence (no padding to get wrong)."""
    device = batch_device(model)
    out = model.generate(
        input_ids=torch.tensor([list(prompt_ids)], dtype=torch.long, device=device),
        attention_mask=torch.ones((1, len(prompt_ids)), dtype=torch.long, device=device),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    return out[0, len(prompt_ids) :].tolist()
