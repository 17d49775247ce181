"""Reading every file type and format; malformed rows named with their line numbers."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest

from loratune.data import Example, load_examples
from loratune.errors import DataError

QA = [
    {"prompt": "What is 2+2?", "response": "4."},
    {"prompt": "Capital of France?", "response": "Paris."},
    {"prompt": "Colour of the sky?", "response": "Blue, mostly."},
]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def expected_qa() -> list[tuple[str, str]]:
    return [(r["prompt"], r["response"]) for r in QA]


def pairs(examples: list[Example]) -> list[tuple[str, str]]:
    return [(e.prompt, e.response) for e in examples]


def test_jsonl_prompt_response_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    # A blank line in the middle: line numbers stay the physical ones an editor shows.
    path.write_text(json.dumps(QA[0]) + "\n\n" + json.dumps(QA[1]) + "\n" + json.dumps(QA[2]) + "\n")
    examples = load_examples(path)
    assert pairs(examples) == expected_qa()
    assert [e.line for e in examples] == [1, 3, 4]
    assert all(e.messages is None for e in examples)


def test_json_array_and_wrapped_list_and_json_lines(tmp_path: Path) -> None:
    a = tmp_path / "a.json"
    a.write_text(json.dumps(QA))
    b = tmp_path / "b.json"
    b.write_text(json.dumps({"data": QA}))
    c = write_jsonl(tmp_path / "c.json", QA)  # JSON Lines saved under a .json name
    for path in (a, b, c):
        assert pairs(load_examples(path)) == expected_qa(), path


def test_csv_with_multiline_quoted_field(tmp_path: Path) -> None:
    rows = [{"question": "Two lines?", "answer": "first\nsecond"}, {"question": "One?", "answer": "yes"}]
    examples = load_examples(write_csv(tmp_path / "d.csv", rows))
    assert pairs(examples) == [("Two lines?", "first\nsecond"), ("One?", "yes")]
    # The header is line 1; the first record spans lines 2-3, so the next one starts on line 4.
    assert [e.line for e in examples] == [2, 4]


def test_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(QA), path)
    examples = load_examples(path)
    assert pairs(examples) == expected_qa()
    assert [e.line for e in examples] == [1, 2, 3]


def test_saved_hf_dataset_dir_and_dataset_dict(tmp_path: Path) -> None:
    import datasets

    datasets.Dataset.from_list(QA).save_to_disk(str(tmp_path / "ds"))
    assert pairs(load_examples(tmp_path / "ds")) == expected_qa()
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(QA[:2]), "test": datasets.Dataset.from_list(QA[2:])})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert pairs(load_examples(tmp_path / "dd")) == expected_qa()[:2]  # the train split
    conv = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    datasets.Dataset.from_list([{"messages": conv}]).save_to_disk(str(tmp_path / "chat"))
    (ex,) = load_examples(tmp_path / "chat")
    assert ex.messages == tuple(conv) and ex.line == 1


def test_alpaca_joins_instruction_and_input(tmp_path: Path) -> None:
    rows = [
        {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"},
        {"instruction": "Name a prime.", "input": "", "output": "7"},
    ]
    examples = load_examples(write_jsonl(tmp_path / "a.jsonl", rows))
    assert pairs(examples) == [("Translate to French.\n\nGood morning", "Bonjour"), ("Name a prime.", "7")]


def test_instruction_output_without_input_column_is_alpaca_too(tmp_path: Path) -> None:
    rows = [{"instruction": "Say hi.", "output": "hi"}]
    assert pairs(load_examples(write_jsonl(tmp_path / "a.jsonl", rows))) == [("Say hi.", "hi")]


@pytest.mark.parametrize(
    ("prompt_key", "response_key"),
    [("question", "answer"), ("input", "output"), ("prompt", "completion"), ("query", "response")],
)
def test_prompt_response_aliases(tmp_path: Path, prompt_key: str, response_key: str) -> None:
    rows = [{prompt_key: "Q1", response_key: "A1"}, {prompt_key: "Q2", response_key: "A2"}]
    assert pairs(load_examples(write_jsonl(tmp_path / "d.jsonl", rows))) == [("Q1", "A1"), ("Q2", "A2")]


def test_configured_columns(tmp_path: Path) -> None:
    rows = [{"q": "Q1", "a": "A1", "question": "decoy", "answer": "decoy"}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    assert pairs(load_examples(path, prompt_column="q", response_column="a")) == [("Q1", "A1")]
    with pytest.raises(DataError, match="no column 'qq'") as err:
        load_examples(path, prompt_column="qq", response_column="a")
    assert err.value.hint == "fix --prompt-column"


def test_chat_messages_and_sharegpt(tmp_path: Path) -> None:
    conv = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Ciao"},
    ]
    share = [{"from": "human", "value": "Ping"}, {"from": "gpt", "value": "Pong"}]
    path = write_jsonl(tmp_path / "c.jsonl", [{"messages": conv}])
    (ex,) = load_examples(path)
    assert ex.messages is not None and [m["content"] for m in ex.messages] == [
        "Be brief.",
        "Hi",
        "Hello",
        "Bye",
        "Ciao",
    ]
    assert (ex.prompt, ex.response) == ("Hi", "Ciao")
    (ex2,) = load_examples(write_jsonl(tmp_path / "s.jsonl", [{"conversations": share}]))
    assert ex2.messages == ({"role": "user", "content": "Ping"}, {"role": "assistant", "content": "Pong"})


def test_chat_in_csv_cell_as_json(tmp_path: Path) -> None:
    conv = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    (ex,) = load_examples(write_csv(tmp_path / "c.csv", [{"messages": json.dumps(conv)}]), format="chat")
    assert ex.response == "Hello" and ex.messages is not None and len(ex.messages) == 2


def test_plain_text(tmp_path: Path) -> None:
    examples = load_examples(write_jsonl(tmp_path / "t.jsonl", [{"text": "Once upon a time."}, {"text": "The end."}]))
    assert pairs(examples) == [("", "Once upon a time."), ("", "The end.")]


def test_explicit_format_overrides_detection(tmp_path: Path) -> None:
    rows = [{"text": "some text", "prompt": "P", "response": "R"}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    assert pairs(load_examples(path)) == [("P", "R")]
    assert pairs(load_examples(path, format="text")) == [("", "some text")]


def test_malformed_jsonl_rows_are_all_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    lines = [
        json.dumps(QA[0]),
        "{not json",
        json.dumps({"prompt": "no answer"}),
        json.dumps(QA[1]),
        json.dumps({"prompt": "Q", "response": ""}),
        "[1, 2]",
        json.dumps({"prompt": "Q", "response": {"nested": 1}}),
    ]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        load_examples(path)
    msg = err.value.message
    assert msg.startswith(f"{path}: 5 malformed rows of 7")
    for fragment in (
        "line 2: invalid JSON",
        "line 3: 'response' is missing",
        "line 5: 'response' is empty",
        "line 6: expected a JSON object, got list",
        "line 7: 'response' must be text, got dict",
    ):
        assert fragment in msg
    assert "line 1:" not in msg and "line 4:" not in msg
    assert err.value.hint is not None and "fix or remove" in err.value.hint


def test_many_malformed_rows_are_capped(tmp_path: Path) -> None:
    rows = [{"prompt": f"Q{i}", "response": None} for i in range(12)]
    with pytest.raises(DataError, match=r"12 malformed rows of 12 .*line 5: 'response' is missing; and 7 more$") as err:
        load_examples(write_jsonl(tmp_path / "d.jsonl", rows))
    assert "line 6:" not in err.value.message


def test_csv_row_with_extra_fields(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("prompt,response\nQ1,A1\nQ2,A2,oops\nQ3\n")
    with pytest.raises(DataError) as err:
        load_examples(path)
    assert "line 3: 3 fields, header has 2" in err.value.message
    assert "line 4: 1 fields, header has 2" in err.value.message


def test_chat_row_problems(tmp_path: Path) -> None:
    rows = [
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
        {"messages": [{"role": "user", "content": "only a question"}]},
        {"messages": [{"role": "wizard", "content": "?"}]},
        {"messages": "not a list"},
    ]
    with pytest.raises(DataError) as err:
        load_examples(write_jsonl(tmp_path / "c.jsonl", rows))
    msg = err.value.message
    assert "line 2: no assistant message" in msg
    assert "line 3: message 1 has role 'wizard'" in msg
    assert "line 4: 'messages' is not valid JSON" in msg


def test_missing_empty_and_unknown_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as err:
        load_examples(tmp_path / "nope.jsonl")
    assert err.value.hint is not None and "demo" in err.value.hint
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="holds no examples"):
        load_examples(tmp_path / "empty.jsonl")
    (tmp_path / "d.xyz").write_text("hello")
    with pytest.raises(DataError, match=r"unknown data file type '\.xyz'"):
        load_examples(tmp_path / "d.xyz")
    (tmp_path / "plain_dir").mkdir()
    with pytest.raises(DataError, match="not a saved Hugging Face dataset"):
        load_examples(tmp_path / "plain_dir")
    with pytest.raises(DataError, match="cannot tell the format from the columns \\['a', 'b'\\]"):
        load_examples(write_jsonl(tmp_path / "ab.jsonl", [{"a": "1", "b": "2"}]))
    with pytest.raises(DataError, match="unknown data format 'yaml'"):
        load_examples(write_jsonl(tmp_path / "ok.jsonl", QA), format="yaml")
    with pytest.raises(DataError, match="expected a messages column"):
        load_examples(write_jsonl(tmp_path / "ok2.jsonl", QA), format="chat")


def test_bad_json_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text('[\n  {"prompt": "a", "response": "b"},\n  {"prompt": "c" "response": "d"}\n]\n')
    with pytest.raises(DataError, match="invalid JSON at line 3"):
        load_examples(path)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"text": "caf\xe9"}\n')
    with pytest.raises(DataError, match="not UTF-8"):
        load_examples(path)


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\u0085"])
def test_unicode_line_separators_inside_strings_are_text_not_line_breaks(tmp_path: Path, sep: str) -> None:
    """str.splitlines cuts at U+2028/U+2029/U+0085; a JSON string or CSV cell may hold them."""
    rows = [{"prompt": f"one{sep}two", "response": f"a{sep}b"}, {"prompt": "q", "response": "r"}]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in rows), encoding="utf-8")
    got = load_examples(jsonl)
    assert [(e.prompt, e.response, e.line) for e in got] == [(f"one{sep}two", f"a{sep}b", 1), ("q", "r", 2)]
    csv_path = write_csv(tmp_path / "d.csv", rows)
    assert [(e.prompt, e.response, e.line) for e in load_examples(csv_path)] == [
        (f"one{sep}two", f"a{sep}b", 2),
        ("q", "r", 3),
    ]


def test_txt_is_plain_text_one_example_per_paragraph(tmp_path: Path) -> None:
    path = tmp_path / "d.txt"
    path.write_text("\nFirst paragraph,\nstill the first.\n\n\nSecond one.\n\n", encoding="utf-8")
    got = load_examples(path)
    assert [(e.prompt, e.response, e.line) for e in got] == [
        ("", "First paragraph,\nstill the first.", 2),
        ("", "Second one.", 6),
    ]


def test_txt_without_blank_lines_is_one_example_per_line(tmp_path: Path) -> None:
    path = tmp_path / "d.txt"
    path.write_text("one\r\ntwo\nthree\n\n", encoding="utf-8")
    assert [(e.response, e.line) for e in load_examples(path)] == [("one", 1), ("two", 2), ("three", 3)]


def test_non_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(DataError, match="not UTF-8 text \\(line 3"):
        load_examples(path)


def test_unterminated_csv_quote_is_a_malformed_row(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text('prompt,response\n"a,b\n')
    with pytest.raises(DataError, match="line 2"):
        load_examples(path)


def test_wrong_columns_hint_names_flags_that_exist(tmp_path: Path) -> None:
    import typer

    from loratune.cli.app import app

    group: Any = typer.main.get_command(app)
    flags = {o for name in ("train", "eval") for p in group.commands[name].params for o in p.opts}
    for fmt in ("auto", "text", "chat", "prompt-response", "alpaca"):
        with pytest.raises(DataError) as err:
            load_examples(write_jsonl(tmp_path / "w.jsonl", [{"foo": "a", "bar": "b"}]), format=fmt)
        text = f"{err.value.message} {err.value.hint}"
        named = set(re.findall(r"--[a-z][a-z-]+", text))
        assert named <= flags, (named - flags, text)
