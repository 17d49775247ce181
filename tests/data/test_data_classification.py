"""Classification data: detected from its columns in every reader, labels from the training split only."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from loratune.data import load_examples
from loratune.data.classification import (
    check_labels,
    class_counts,
    classification_layout,
    describe_counts,
    label_set,
    load_cls_examples,
    read_cls,
    resolve_task_type,
)
from loratune.errors import ConfigError, DataError

ROWS = [
    {"text": "great film", "label": "positive"},
    {"text": "awful plot", "label": "negative"},
    {"text": "loved it", "label": "positive"},
]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (["text", "label"], ("text", "", "label")),
        (["sentence", "label"], ("sentence", "", "label")),
        (["sentence1", "sentence2", "label", "idx"], ("sentence1", "sentence2", "label")),
        (["text", "labels"], ("text", "", "labels")),
    ],
)
def test_layout_from_columns(columns: list[str], expected: tuple[str, str, str]) -> None:
    layout = classification_layout(columns)
    assert layout is not None and (layout.text, layout.text_pair, layout.label) == expected


@pytest.mark.parametrize("columns", [["text"], ["prompt", "response"], ["label", "idx"], ["question", "answer"]])
def test_not_classification(columns: list[str]) -> None:
    assert classification_layout(columns) is None


def test_every_reader(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    jsonl = write_jsonl(tmp_path / "d.jsonl", ROWS)
    csv_path = write_csv(tmp_path / "d.csv", ROWS)
    parquet = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), parquet)
    for path in (jsonl, csv_path, parquet):
        got = [(e.text, e.label) for e in load_cls_examples(path)]
        assert got == [(r["text"], r["label"]) for r in ROWS], path
        assert resolve_task_type("auto", str(path)) == "seq-cls"


def test_saved_dataset_dir(tmp_path: Path) -> None:
    import datasets

    datasets.Dataset.from_list([{"sentence": r["text"], "label": i % 2} for i, r in enumerate(ROWS)]).save_to_disk(
        str(tmp_path / "ds")
    )
    got = load_cls_examples(tmp_path / "ds")
    assert [e.label for e in got] == ["0", "1", "0"] and got[0].text == "great film"


def test_pairs_and_int_labels(tmp_path: Path) -> None:
    rows = [{"sentence1": f"a{i}", "sentence2": f"b{i}", "label": i % 3} for i in range(12)]
    got = load_cls_examples(write_jsonl(tmp_path / "p.jsonl", rows))
    assert got[4].text_pair == "b4" and got[4].label == "1"
    assert label_set(got) == ("0", "1", "2")


def test_int_labels_sort_numerically() -> None:
    from loratune.data.classification import ClsExample

    ex = [ClsExample("x", str(n)) for n in (10, 2, 1)]
    assert label_set(ex) == ("1", "2", "10")


def test_generation_data_stays_causal_lm(tmp_path: Path) -> None:
    qa = write_jsonl(tmp_path / "qa.jsonl", [{"prompt": "a", "response": "b"}])
    text = write_jsonl(tmp_path / "t.jsonl", [{"text": "just text"}])
    assert resolve_task_type("auto", str(qa)) == "causal-lm"
    assert resolve_task_type("auto", str(text)) == "causal-lm"
    # an explicit generation format wins over the columns
    cls = write_jsonl(tmp_path / "c.jsonl", ROWS)
    assert resolve_task_type("auto", str(cls), "text") == "causal-lm"


def test_format_classification_forces_it(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", ROWS)
    assert resolve_task_type("auto", str(path), "classification") == "seq-cls"
    with pytest.raises(ConfigError, match="needs --task-type seq-cls"):
        resolve_task_type("causal-lm", str(path), "classification")
    with pytest.raises(ConfigError, match="unknown task type"):
        resolve_task_type("cls", str(path))
    # the generation reader refuses it with the fix
    with pytest.raises(DataError, match="trains a classifier"):
        load_examples(path, format="classification")


def test_forced_on_data_without_labels(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "qa.jsonl", [{"prompt": "a", "response": "b"}])
    with pytest.raises(DataError, match="expected a 'label' column"):
        load_cls_examples(path)


def test_malformed_rows_reported_together(tmp_path: Path) -> None:
    rows = [{"text": "ok", "label": "a"}, {"text": "", "label": "b"}, {"text": "x", "label": None}, {"text": "y"}]
    with pytest.raises(DataError) as e:
        load_cls_examples(write_jsonl(tmp_path / "bad.jsonl", rows))
    msg = e.value.one_line()
    assert "3 malformed row(s) of 4" in msg and "line 2" in msg and "line 3" in msg and "line 4" in msg
    assert "\n" not in msg


def test_unseen_validation_label_is_an_error(tmp_path: Path) -> None:
    train = load_cls_examples(write_jsonl(tmp_path / "t.jsonl", ROWS))
    val = load_cls_examples(write_jsonl(tmp_path / "v.jsonl", [*ROWS[:1], {"text": "meh", "label": "neutral"}]))
    with pytest.raises(DataError) as e:
        check_labels(train, val, where="t.jsonl")
    msg = e.value.one_line()
    assert "'neutral'" in msg and "never saw" in msg and "line 2" in msg and "negative, positive" in msg
    assert "\n" not in msg


def test_one_class_is_an_error() -> None:
    from loratune.data.classification import ClsExample

    with pytest.raises(DataError, match=r"1 class\(es\)"):
        check_labels([ClsExample("a", "x"), ClsExample("b", "x")], [])


def test_counts_and_separate_val_file(tmp_path: Path) -> None:
    raw = read_cls(
        str(write_jsonl(tmp_path / "t.jsonl", ROWS)), val_data=str(write_jsonl(tmp_path / "v.jsonl", ROWS[:2]))
    )
    assert raw.val_examples is not None and len(raw.val_examples) == 2
    labels = check_labels(raw.examples, raw.val_examples)
    counts = class_counts(raw.examples, labels)
    assert counts == {"negative": 1, "positive": 2}
    assert describe_counts(counts) == "negative 1, positive 2"


def test_demo_cls_is_balanced_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORATUNE_CACHE", str(tmp_path))
    from loratune.data import resolve_data_arg

    path = resolve_data_arg("demo-cls")
    assert path.parent == tmp_path / "data" and path.is_file()
    ex = load_cls_examples(path)
    assert len(ex) == 600 and class_counts(ex, ("class", "function")) == {"class": 300, "function": 300}
    assert resolve_data_arg("demo-cls") == path  # reused
    assert resolve_task_type("auto", "demo-cls") == "seq-cls"
