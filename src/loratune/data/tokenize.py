"""Tokenize examples into ids and labels; the loss sees only what the model should learn to write.

With a chat template, each example is rendered as a conversation and the labels cover exactly every
assistant turn's content plus its end-of-turn token; everything else (system prompt, user turns, role
headers) is -100. The boundary of each assistant turn is found by rendering the conversation up to that
turn (with the generation prompt) and checking that it is a token prefix of the whole; where a tokenizer
merges across the boundary, character offsets of the full rendering are used instead.

Without a template: ``prompt`` (+ a newline) then ``response`` + EOS, labels on response + EOS.
Plain-text examples (``prompt == ""``) are language modelling: every token is a label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loratune.data.types import IGNORE_INDEX, Example, TokenizedData, TokenizedExample, TokenStats
from loratune.errors import DataError


@dataclass(frozen=True)
class _Rendered:
    """A conversation rendered to text, with one (prefix, through) text pair per assistant turn."""

    full: str
    turns: list[tuple[str, str, str]]  # (text before the answer, text through its end-of-turn, answer)


def tokenize_examples(
    examples: Sequence[Example], tokenizer: Any, *, max_length: int = 512, use_chat_template: bool | None = None
) -> TokenizedData:
    """Tokenize, mask, truncate to ``max_length`` and drop examples left with no label tokens."""
    if max_length < 2:
        raise DataError(f"max length must be at least 2 tokens, got {max_length}", "pass e.g. --max-length 512")
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if use_chat_template is None:
        use_chat_template = has_template
    elif use_chat_template and not has_template:
        raise DataError(
            "the tokenizer has no chat template", "drop --chat-template, or use a model whose tokenizer has one"
        )
    out: list[TokenizedExample] = []
    truncated = dropped = 0
    needed = 0  # the shortest max_length that would have kept a dropped example (0: none dropped)
    for ex in examples:
        if ex.messages is None and not ex.prompt:
            ids, labels = _plain(ex, tokenizer)
        elif use_chat_template:
            ids, labels = _templated(ex, tokenizer)
        else:
            ids, labels = _untemplated(ex, tokenizer)
        cut = len(ids) > max_length
        first_label = next((i for i, t in enumerate(labels) if t != IGNORE_INDEX), None)
        ids, labels = ids[:max_length], labels[:max_length]
        if all(t == IGNORE_INDEX for t in labels):
            dropped += 1  # the response was cut off entirely: nothing to learn from this example
            if first_label is not None:
                needed = first_label + 1 if not needed else min(needed, first_label + 1)
            continue
        truncated += cut
        out.append(TokenizedExample(input_ids=ids, labels=labels, line=ex.line))
    return TokenizedData(out, _stats(out, truncated, dropped, needed))


def _encode(tokenizer: Any, text: str, *, special: bool = False) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def _eos(tokenizer: Any) -> list[int]:
    eos = getattr(tokenizer, "eos_token_id", None)
    return [int(eos)] if eos is not None else []


def _plain(ex: Example, tokenizer: Any) -> tuple[list[int], list[int]]:
    ids = _encode(tokenizer, ex.response, special=True) + _eos(tokenizer)
    return ids, list(ids)


def _untemplated(ex: Example, tokenizer: Any) -> tuple[list[int], list[int]]:
    turns = _conversation(ex)
    ids: list[int] = []
    labels: list[int] = []
    for k, msg in enumerate(turns):
        if msg["role"] == "assistant":
            part = _encode(tokenizer, msg["content"]) + _eos(tokenizer)
            ids += part
            labels += part
        else:
            text = msg["content"]
            if not text.endswith(("\n", " ")):
                text += "\n"  # keep the answer from gluing onto the prompt's last word
            part = _encode(tokenizer, text, special=k == 0)  # BOS (if the tokenizer adds one) only once
            ids += part
            labels += [IGNORE_INDEX] * len(part)
    return ids, labels


def _conversation(ex: Example) -> list[dict[str, Any]]:
    if ex.messages is not None:
        return [dict(m) for m in ex.messages]
    return [{"role": "user", "content": ex.prompt}, {"role": "assistant", "content": ex.response}]


def _render(ex: Example, tokenizer: Any) -> _Rendered:
    msgs = _conversation(ex)

    def render(conv: list[dict[str, Any]], gen: bool) -> str:
        text = tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
        return str(text)

    try:
        full = render(msgs, False)
        turns = []
        for k, m in enumerate(msgs):
            if m["role"] == "assistant":
                turns.append((render(msgs[:k], True), render(msgs[: k + 1], False), m["content"]))
    except Exception as e:  # jinja raises for conversations a template refuses (e.g. two user turns)
        raise DataError(
            f"line {ex.line}: the chat template refused the conversation ({type(e).__name__}: {str(e)[:120]})",
            "fix the message order in that row, or tokenize without the chat template",
        ) from None
    return _Rendered(full, turns)


def _templated(ex: Example, tokenizer: Any) -> tuple[list[int], list[int]]:
    rendered = _render(ex, tokenizer)
    ids = _encode(tokenizer, rendered.full)
    labels = [IGNORE_INDEX] * len(ids)
    offsets: list[tuple[int, int]] | None = None
    cursor = 0  # characters of the full rendering already accounted for (fallback search starts here)
    for before, through, answer in rendered.turns:
        # The end-of-turn marker is what the template writes after the answer, minus trailing whitespace.
        end_text = through.rstrip()
        span = _token_span(tokenizer, ids, before, end_text)
        if span is None:
            if offsets is None:
                offsets = _offsets(tokenizer, rendered.full, ex.line)
            lo, hi = _char_span(rendered.full, before, end_text, answer, cursor, ex.line)
            cursor = hi
            span = _tokens_in(offsets, lo, hi)
        start, end = span
        labels[start:end] = ids[start:end]
    return ids, labels


def _token_span(tokenizer: Any, ids: list[int], before: str, end_text: str) -> tuple[int, int] | None:
    """Token indices of [answer start, end of turn) when both renderings are token prefixes of ``ids``."""
    head = _encode(tokenizer, before)
    upto = _encode(tokenizer, end_text)
    if ids[: len(head)] == head and ids[: len(upto)] == upto and len(head) < len(upto):
        return len(head), len(upto)
    return None


def _offsets(tokenizer: Any, text: str, line: int) -> list[tuple[int, int]]:
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [(int(a), int(b)) for a, b in enc["offset_mapping"]]
    except Exception:  # slow tokenizers have no offsets
        raise DataError(
            f"line {line}: cannot find where the answer starts in the chat template's tokens",
            "use a fast tokenizer (tokenizer.json), or tokenize without the chat template",
        ) from None


def _char_span(full: str, before: str, end_text: str, answer: str, cursor: int, line: int) -> tuple[int, int]:
    """Character range [answer start, end of turn) in ``full``."""
    if full.startswith(before) and full.startswith(end_text) and len(before) < len(end_text):
        return len(before), len(end_text)
    # The template rewrites the conversation depending on its length (a header counting turns, earlier
    # turns shortened): find the answer itself, after the previous turn, and the marker the template
    # writes after it.
    lo = full.find(answer, max(cursor, len(before) if full.startswith(before) else 0)) if answer else -1
    if lo < 0:
        raise DataError(
            f"line {line}: the chat template does not reproduce the assistant's answer",
            "tokenize without the chat template",
        )
    hi = lo + len(answer)
    tail = end_text.rfind(answer)
    marker = end_text[tail + len(answer) :] if tail >= 0 else ""
    if marker and full.startswith(marker, hi):
        hi += len(marker)
    return lo, hi


def _tokens_in(offsets: list[tuple[int, int]], lo: int, hi: int) -> tuple[int, int]:
    """Token indices [first token ending after ``lo``, first token starting at or after ``hi``)."""
    start = next((i for i, (_, b) in enumerate(offsets) if b > lo), len(offsets))
    end = next((i for i, (a, _) in enumerate(offsets) if a >= hi), len(offsets))
    return start, end


def _stats(out: list[TokenizedExample], truncated: int, dropped: int, needed: int = 0) -> TokenStats:
    lengths = sorted(len(t.input_ids) for t in out)
    n = len(lengths)
    label_tokens = sum(sum(1 for x in t.labels if x != IGNORE_INDEX) for t in out)
    p95 = lengths[max(0, math.ceil(0.95 * n) - 1)] if n else 0  # nearest-rank percentile
    return TokenStats(
        n_examples=n,
        total_tokens=sum(lengths),
        label_tokens=label_tokens,
        mean_length=sum(lengths) / n if n else 0.0,
        max_length=lengths[-1] if n else 0,
        p95_length=p95,
        truncated=truncated,
        dropped=dropped,
        dropped_min_length=needed,
    )


def describe_stats(stats: TokenStats) -> str:
    """One line for progress output."""
    share = stats.label_tokens / stats.total_tokens if stats.total_tokens else 0.0
    line = (
        f"{stats.n_examples} examples, {stats.total_tokens:,} tokens ({share:.0%} trained on), "
        f"length mean {stats.mean_length:.0f} / p95 {stats.p95_length} / max {stats.max_length}"
    )
    if stats.truncated:
        line += f", {stats.truncated} truncated"
    if stats.dropped:
        line += f", {stats.dropped} dropped (no answer left after truncation)"
    return line
