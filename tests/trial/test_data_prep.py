"""From ``--data`` to tokenized rows: the validation split is taken by example, before tokenizing."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from loratune.trial.data_prep import REFERENCE_LIMIT, prepare, read, reference


class CharTokenizer:
    """One token per character, EOS = 0, no chat template: an example's length is its text's length."""

    chat_template = None
    eos_token_id = 0

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [ord(c) for c in text]}


@pytest.fixture
def qa_file(tmp_path: Path) -> Path:
    # Every 3rd prompt is longer than 64 characters: at --max-length 64 its answer is cut off entirely
    # and the row is dropped, so a split taken after tokenizing would shift with the length.
    rows = [
        {"prompt": ("a long preamble " * 5 if i % 3 == 0 else "") + f"What is {i} plus {i}?", "response": f"{2 * i}."}
        for i in range(60)
    ]
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _texts(examples: list) -> set[tuple[str, str]]:
    return {(ex.prompt, ex.response) for ex in examples}


def test_validation_examples_do_not_depend_on_max_length(qa_file: Path) -> None:
    raw = read(str(qa_file))
    short = prepare(raw, CharTokenizer(), max_length=64, val_fraction=0.1, seed=0)
    long = prepare(raw, CharTokenizer(), max_length=512, val_fraction=0.1, seed=0)
    assert short.stats.dropped > 0 and long.stats.dropped == 0  # the lengths really differ in what they keep
    assert len(short.val_examples) == 6
    assert _texts(short.val_examples) == _texts(long.val_examples)
    assert not _texts(short.val_examples) & _texts(short.train_examples)
    assert len(short.train_examples) + len(short.val_examples) == 60
    # Tokenized rows come from their own side only (``line`` is the source row).
    for prepared in (short, long):
        val_lines = {ex.line for ex in prepared.val_examples}
        assert {t.line for t in prepared.val} <= val_lines
        assert not {t.line for t in prepared.train} & val_lines
    assert len(long.val) == 6 and len(short.val) + short.val_stats.dropped == 6


def test_split_follows_the_seed_and_a_separate_validation_file_wins(qa_file: Path, tmp_path: Path) -> None:
    raw = read(str(qa_file))
    a = prepare(raw, CharTokenizer(), seed=0)
    b = prepare(raw, CharTokenizer(), seed=1)
    assert _texts(a.val_examples) != _texts(b.val_examples)
    assert _texts(prepare(raw, CharTokenizer(), seed=0).val_examples) == _texts(a.val_examples)
    val_file = tmp_path / "val.jsonl"
    val_file.write_text(json.dumps({"prompt": "Separate?", "response": "Yes."}) + "\n")
    own = prepare(read(str(qa_file), val_data=str(val_file)), CharTokenizer(), seed=0)
    assert len(own.train_examples) == 60 and _texts(own.val_examples) == {("Separate?", "Yes.")}


def test_one_reference_limit(tmp_path: Path) -> None:
    assert inspect.signature(reference).parameters["limit"].default == REFERENCE_LIMIT == 16
    path = tmp_path / "prose.jsonl"
    path.write_text("".join(json.dumps({"text": f"Paragraph number {i} of plain prose."}) + "\n" for i in range(40)))
    assert len(reference(str(path), CharTokenizer())) == REFERENCE_LIMIT
    assert reference("none", CharTokenizer()) == [] and reference(None, CharTokenizer()) == []


def test_every_answer_cut_away_names_max_length_and_the_shortest(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    path.write_text("".join(json.dumps({"prompt": "p" * (30 + i), "response": "r"}) + "\n" for i in range(10)))
    from loratune.errors import DataError

    with pytest.raises(DataError) as err:
        prepare(read(str(path)), CharTokenizer(), max_length=16, val_fraction=0.1)
    # The shortest training prompt: 30 or 31 characters (one of the 10 is held out) + the newline
    assert "--max-length 16 cuts away the answer of every training example" in err.value.message
    assert "the shortest needs 32 tokens" in err.value.message or "the shortest needs 33 tokens" in err.value.message
    assert "--max-length" in (err.value.hint or "")
