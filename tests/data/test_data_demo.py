"""The stdlib-docstring demo sets: size, determinism, disjointness, caching."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest

from loratune.data import demo_qa_path, demo_reference_path, load_examples, resolve_data_arg
from loratune.data.demo import first_sentence, qa_pairs
from loratune.errors import DataError


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LORATUNE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def read(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_qa_set_size_shape_and_cache(cache: Path) -> None:
    path = demo_qa_path(1200)
    assert path.parent == cache / "data"
    assert f"py{platform.python_version()}" in path.name and "1200" in path.name
    rows = read(path)
    assert len(rows) == 1200
    assert len({r["question"] for r in rows}) == 1200
    assert all(r["question"].startswith("What does `") and r["question"].endswith("` do?") for r in rows)
    assert all(20 <= len(r["answer"]) <= 300 and "\n" not in r["answer"] for r in rows)
    # It loads as prompt-response data through the ordinary reader.
    examples = load_examples(path)
    assert [(e.prompt, e.response) for e in examples[:3]] == [(r["question"], r["answer"]) for r in rows[:3]]
    # Built once: a second call reuses the file instead of rewriting it.
    mtime = path.stat().st_mtime_ns
    assert demo_qa_path(1200) == path and path.stat().st_mtime_ns == mtime
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp files left


def test_qa_set_is_deterministic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = demo_qa_path(300).read_bytes()
    monkeypatch.setenv("LORATUNE_CACHE", str(tmp_path / "other"))
    assert demo_qa_path(300).read_bytes() == first
    known = {r["question"]: r["answer"] for r in qa_pairs()}
    assert known["What does `json.dumps` do?"] == "Serialize ``obj`` to a JSON formatted ``str``."


def test_reference_set_is_prose_and_disjoint_from_qa() -> None:
    ref = read(demo_reference_path(300))
    assert len(ref) == 300 and len({r["text"] for r in ref}) == 300
    assert all(set(r) == {"text"} and 200 <= len(r["text"]) <= 1200 for r in ref)
    answers = {r["answer"] for r in qa_pairs()}
    assert not any(a in r["text"] for r in ref for a in answers)
    assert [e.prompt for e in load_examples(demo_reference_path(300))] == [""] * 300  # plain text format


def test_too_many_asked() -> None:
    with pytest.raises(DataError, match="cannot build 100000 demo QA pairs") as err:
        demo_qa_path(100000)
    assert err.value.hint is not None and err.value.hint.startswith("ask for between 1 and ")


def test_first_sentence_rules() -> None:
    assert first_sentence("dumps(obj, *, skipkeys=False)\n\nSerialize obj to a JSON string.  More text.") == (
        "Serialize obj to a JSON string."
    )
    assert first_sentence("Return the items, e.g. a list, in order.\n\nDetails.") == (
        "Return the items, e.g. a list, in order."
    )
    assert first_sentence("Join two\n   path components.\nSecond sentence.") == "Join two path components."
    assert first_sentence("Too short.") is None
    assert first_sentence("x" * 400) is None
    assert first_sentence(None) is None


def test_resolve_data_arg(tmp_path: Path) -> None:
    assert resolve_data_arg("demo") == demo_qa_path()
    f = tmp_path / "d.jsonl"
    f.write_text('{"text": "hello"}\n')
    assert resolve_data_arg(str(f)) == f
    with pytest.raises(DataError, match="does not exist"):
        resolve_data_arg(str(tmp_path / "missing.jsonl"))
