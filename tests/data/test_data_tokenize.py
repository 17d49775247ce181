"""Loss masks with SmolLM2's real chat template; truncation, dropping and statistics."""

from __future__ import annotations

from typing import Any

import pytest

from loratune.data import IGNORE_INDEX, Example, TokenizedExample, describe_stats, tokenize_examples
from loratune.data import tokenize as tokenize_module
from loratune.errors import DataError

END = "<|im_end|>"


@pytest.fixture(scope="module")
def tok() -> Any:
    from transformers import AutoTokenizer

    from loratune.models.source import resolve_source
    from loratune.models.weights import weights_dir

    return AutoTokenizer.from_pretrained(weights_dir(resolve_source("smollm2-135m")))


class CharTokenizer:
    """One token per character (id = code point), EOS = 0, no template: lengths are easy to predict."""

    chat_template: str | None = None
    eos_token_id = 0

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [ord(c) for c in text]}


def label_runs(t: TokenizedExample) -> list[list[int]]:
    """Contiguous stretches of label tokens (one per assistant turn)."""
    runs: list[list[int]] = []
    prev = IGNORE_INDEX
    for label in t.labels:
        if label != IGNORE_INDEX:
            if prev == IGNORE_INDEX:
                runs.append([])
            runs[-1].append(label)
        prev = label
    return runs


MULTI = Example(
    prompt="Hi",
    response="See you.",
    messages=(
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How are you?"},
        {"role": "user", "content": "Fine. Bye"},
        {"role": "assistant", "content": "See you."},
    ),
    line=7,
)


def test_prompt_response_labels_are_exactly_the_answer_and_end_of_turn(tok: Any) -> None:
    ex = Example(prompt="What does `json.dumps` do?", response="Serialize ``obj`` to a JSON formatted ``str``.")
    (t,) = tokenize_examples([ex], tok).examples
    full = tok.apply_chat_template(
        [{"role": "user", "content": ex.prompt}, {"role": "assistant", "content": ex.response}], tokenize=False
    )
    assert t.input_ids == tok(full, add_special_tokens=False)["input_ids"]
    assert len(t.labels) == len(t.input_ids)
    runs = label_runs(t)
    assert len(runs) == 1
    assert tok.decode(runs[0]) == ex.response + END
    # Labels, where set, equal the input ids (the model shifts them itself).
    assert all(label in (IGNORE_INDEX, i) for label, i in zip(t.labels, t.input_ids, strict=True))
    # The default system prompt and the user's question are masked; so is the newline after <|im_end|>.
    first = t.labels.index(runs[0][0])
    assert "You are a helpful AI assistant" in tok.decode(t.input_ids[:first])
    assert tok.decode(t.input_ids[first + len(runs[0]) :]) == "\n"


def test_multi_turn_chat_labels_every_assistant_turn(tok: Any) -> None:
    (t,) = tokenize_examples([MULTI], tok).examples
    runs = label_runs(t)
    assert [tok.decode(r) for r in runs] == ["Hello! How are you?" + END, "See you." + END]
    assert t.line == 7


def test_char_offset_fallback_gives_the_same_mask(tok: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    examples = [MULTI, Example(prompt="Q: 1+1?", response=" two (2), with a leading space")]
    direct = tokenize_examples(examples, tok).examples
    monkeypatch.setattr(tokenize_module, "_token_span", lambda *a, **k: None)
    fallback = tokenize_examples(examples, tok).examples
    assert [t.labels for t in fallback] == [t.labels for t in direct]
    assert [t.input_ids for t in fallback] == [t.input_ids for t in direct]


def test_without_template_prompt_newline_response_eos(tok: Any) -> None:
    ex = Example(prompt="What is 2+2?", response="It is 4.")
    (t,) = tokenize_examples([ex], tok, use_chat_template=False).examples
    assert tok.decode(t.input_ids) == "What is 2+2?\nIt is 4." + END
    assert [tok.decode(r) for r in label_runs(t)] == ["It is 4." + END]
    assert t.labels[: len(tok("What is 2+2?\n")["input_ids"])] == [IGNORE_INDEX] * len(
        tok("What is 2+2?\n")["input_ids"]
    )


def test_plain_text_is_all_labels(tok: Any) -> None:
    (t,) = tokenize_examples([Example(prompt="", response="Once upon a time.")], tok).examples
    assert t.labels == t.input_ids
    assert tok.decode(t.input_ids) == "Once upon a time." + END


def test_truncation_counts_and_drops() -> None:
    tok = CharTokenizer()
    examples = [
        Example(prompt="p" * 5, response="r" * 3),  # 5+1 newline + 3 + eos = 10 tokens: fits
        Example(prompt="p" * 5, response="r" * 10),  # 17 tokens: cut to 12, 6 answer tokens remain
        Example(prompt="p" * 20, response="r" * 3),  # 25 tokens: the answer is cut off entirely
        Example(prompt="", response="t" * 30),  # plain text, 31 tokens: cut to 12, all labels
    ]
    data = tokenize_examples(examples, tok, max_length=12)
    assert [len(t.input_ids) for t in data.examples] == [10, 12, 12]
    assert [sum(x != IGNORE_INDEX for x in t.labels) for t in data.examples] == [4, 6, 12]
    s = data.stats
    assert (s.n_examples, s.truncated, s.dropped) == (3, 2, 1)
    assert s.dropped_min_length == 22  # 20 prompt + newline, then the answer's first token
    assert (s.total_tokens, s.label_tokens, s.max_length) == (34, 22, 12)
    assert s.mean_length == pytest.approx(34 / 3)


def test_stats_percentile_and_description() -> None:
    tok = CharTokenizer()
    # Plain texts of 1..20 characters: lengths 2..21 with EOS; the nearest-rank p95 of 20 values is the 19th.
    data = tokenize_examples([Example(prompt="", response="x" * k) for k in range(1, 21)], tok)
    s = data.stats
    assert (s.n_examples, s.total_tokens, s.max_length, s.p95_length) == (20, 230, 21, 20)
    assert s.mean_length == pytest.approx(11.5)
    assert describe_stats(s) == "20 examples, 230 tokens (100% trained on), length mean 12 / p95 20 / max 21"
    cut = tokenize_examples([Example(prompt="p" * 9, response="r")], tok, max_length=5).stats
    assert describe_stats(cut) == (
        "0 examples, 0 tokens (0% trained on), length mean 0 / p95 0 / max 0, "
        "1 dropped (no answer left after truncation)"
    )


def test_template_errors() -> None:
    with pytest.raises(DataError, match="no chat template"):
        tokenize_examples([Example("q", "a")], CharTokenizer(), use_chat_template=True)
    with pytest.raises(DataError, match="at least 2 tokens"):
        tokenize_examples([Example("q", "a")], CharTokenizer(), max_length=1)

    class Refusing(CharTokenizer):
        chat_template = "{{ raise_exception('roles must alternate') }}"

        def apply_chat_template(self, *a: Any, **k: Any) -> str:
            raise ValueError("roles must alternate")

    with pytest.raises(DataError, match="line 3: the chat template refused the conversation"):
        tokenize_examples([Example("q", "a", line=3)], Refusing())


class CountingTemplate(CharTokenizer):
    """A template whose header counts the messages, so no shorter rendering is a prefix of the full one."""

    chat_template = "(counting)"

    def __call__(self, text: str, add_special_tokens: bool = False, **kw: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"input_ids": [ord(c) for c in text]}
        if kw.get("return_offsets_mapping"):
            out["offset_mapping"] = [(i, i + 1) for i in range(len(text))]
        return out

    def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool, add_generation_prompt: bool) -> str:
        body = "".join(f"<{m['role']}>{m['content']}</s>\n" for m in messages)
        return f"[{len(messages)} messages]\n" + body + ("<assistant>" if add_generation_prompt else "")


def test_search_fallback_when_template_rewrites_the_conversation() -> None:
    tok = CountingTemplate()
    (t,) = tokenize_examples([MULTI], tok).examples
    texts = ["".join(chr(i) for i in run) for run in label_runs(t)]
    assert texts == ["Hello! How are you?</s>", "See you.</s>"]
    assert "".join(chr(i) for i in t.input_ids).startswith("[4 messages]\n<user>Hi</s>")
