"""Read a dataset file into raw rows, each tagged with its 1-based source position.

JSONL and CSV rows carry their physical line number (what an editor shows); JSON arrays, Parquet and
saved Hugging Face datasets carry their row index. Lines end at ``\n`` (or ``\r\n``) only: U+2028,
U+2029 and U+0085 are text inside a string, not line breaks (``str.splitlines`` would cut rows there).

Plain ``.txt`` files are language-modelling text in one ``text`` column: one example per paragraph
(blocks separated by blank lines); a file with no blank line at all is one example per line. Each
example carries the line its paragraph starts on. Unreadable rows become :class:`BadRow` entries so
the caller can report all of them at once instead of stopping at the first.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loratune.errors import DataError

FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt")
_HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_EXTRA = "\0extra"  # DictReader key for fields beyond the header


@dataclass(frozen=True)
class Row:
    line: int
    values: dict[str, Any]


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str


@dataclass
class RawTable:
    path: Path
    unit: str  # "line" or "row": how positions are named in error messages
    rows: list[Row]
    bad: list[BadRow]


def read_table(path: str | Path) -> RawTable:
    """Dispatch on the suffix (or on a saved-dataset directory)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(
            f"data file {p} does not exist",
            f"pass a {', '.join(FILE_SUFFIXES)} file, a directory saved by datasets' save_to_disk, or 'demo'",
        )
    if p.is_dir():
        return _read_hf_dir(p)
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(p)
    if suffix == ".json":
        return _read_json(p)
    if suffix == ".csv":
        return _read_csv(p)
    if suffix == ".parquet":
        return _read_parquet(p)
    if suffix == ".txt":
        return _read_txt(p)
    raise DataError(
        f"{p}: unknown data file type '{suffix or '(no suffix)'}'",
        f"use one of {', '.join(FILE_SUFFIXES)} or a directory saved by datasets' save_to_disk",
    )


def _read_text(p: Path) -> str:
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {p}: {e.strerror or e}", "check the path and its permissions") from None
    try:
        return raw.decode("utf-8-sig")  # -sig: tolerate a BOM written by spreadsheet tools
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"{p} is not UTF-8 text (line {line}, byte {e.start}: {raw[e.start : e.start + 1]!r})",
            "re-save the file as UTF-8",
        ) from None


def split_lines(text: str) -> list[str]:
    """Physical lines: split at ``\n`` only, a trailing ``\r`` dropped (CRLF files)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def _read_jsonl(p: Path) -> RawTable:
    rows: list[Row] = []
    bad: list[BadRow] = []
    for i, text in enumerate(split_lines(_read_text(p)), start=1):
        if not text.strip():
            continue  # blank lines (often a trailing one) are not rows
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            bad.append(BadRow(i, f"invalid JSON ({e.msg} at column {e.colno})"))
            continue
        if isinstance(value, dict):
            rows.append(Row(i, value))
        else:
            bad.append(BadRow(i, f"expected a JSON object, got {type(value).__name__}"))
    return RawTable(p, "line", rows, bad)


def _read_json(p: Path) -> RawTable:
    text = _read_text(p)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # several objects one after another: JSON Lines under a .json name
            return _read_jsonl(p)
        raise DataError(
            f"{p}: invalid JSON at line {e.lineno}, column {e.colno} ({e.msg})", "fix the file, or save it as JSONL"
        ) from None
    if isinstance(value, dict):
        # {"data": [...]} and similar: accept a single list-valued key.
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(
                f"{p}: expected a list of objects (or an object holding one list), got an object with keys "
                f"{sorted(value)[:8]}",
                "save the examples as a JSON list or as JSONL (one object per line)",
            )
        value = lists[0]
    if not isinstance(value, list):
        raise DataError(f"{p}: expected a list of objects, got {type(value).__name__}", "save a JSON list or JSONL")
    rows: list[Row] = []
    bad: list[BadRow] = []
    for i, item in enumerate(value, start=1):
        if isinstance(item, dict):
            rows.append(Row(i, item))
        else:
            bad.append(BadRow(i, f"expected a JSON object, got {type(item).__name__}"))
    return RawTable(p, "item", rows, bad)


def _read_csv(p: Path) -> RawTable:
    rows: list[Row] = []
    bad: list[BadRow] = []
    # newline="": the csv module sees line ends as written (it splits rows itself, quoted breaks kept).
    reader = csv.DictReader(io.StringIO(_read_text(p), newline=""), restkey=_EXTRA)
    try:
        header = reader.fieldnames
        if not header:
            return RawTable(p, "line", [], [])
        start = reader.line_num + 1
        for record in reader:
            line = start
            start = reader.line_num + 1  # a quoted field may span several physical lines
            if _EXTRA in record:
                bad.append(BadRow(line, f"{len(header) + len(record[_EXTRA])} fields, header has {len(header)}"))
                continue
            missing = [k for k, v in record.items() if v is None]
            if missing:
                bad.append(BadRow(line, f"{len(header) - len(missing)} fields, header has {len(header)}"))
                continue
            if not any((v or "").strip() for v in record.values()):
                continue  # an empty line inside the CSV
            rows.append(Row(line, dict(record)))
    except csv.Error as e:
        raise DataError(f"{p}: CSV error at line {reader.line_num}: {e}", "check the quoting on that line") from None
    return RawTable(p, "line", rows, bad)


def _read_txt(p: Path) -> RawTable:
    lines = split_lines(_read_text(p))
    filled = [i for i, ln in enumerate(lines) if ln.strip()]
    inner = lines[filled[0] : filled[-1] + 1] if filled else []
    if all(ln.strip() for ln in inner):  # no blank line between texts: one example per line
        return RawTable(p, "line", [Row(i + 1, {"text": lines[i]}) for i in filled], [])
    rows: list[Row] = []
    block: list[str] = []
    start = 0
    for i, ln in enumerate([*lines, ""], start=1):
        if ln.strip():
            start = start if block else i
            block.append(ln)
        elif block:
            rows.append(Row(start, {"text": "\n".join(block)}))
            block = []
    return RawTable(p, "line", rows, [])


def _read_parquet(p: Path) -> RawTable:
    import pyarrow.parquet as pq

    try:
        records = pq.read_table(p).to_pylist()
    except Exception as e:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{p}: cannot read Parquet ({type(e).__name__}: {str(e)[:160]})", "check the file") from None
    return RawTable(p, "row", [Row(i, r) for i, r in enumerate(records, start=1)], [])


def _read_hf_dir(p: Path) -> RawTable:
    if not any((p / m).is_file() for m in _HF_MARKERS):
        raise DataError(
            f"{p} is a directory but not a saved Hugging Face dataset (no {' / '.join(_HF_MARKERS)})",
            "pass a data file, or a directory written by datasets.Dataset.save_to_disk",
        )
    import datasets  # lazy: slow to import and only needed here

    try:
        ds = datasets.load_from_disk(str(p))  # Arrow files; nothing is unpickled
    except Exception as e:
        raise DataError(
            f"{p}: cannot load the saved dataset ({type(e).__name__}: {str(e)[:160]})", "re-save it"
        ) from None
    if isinstance(ds, datasets.DatasetDict):
        if not ds:
            return RawTable(p, "row", [], [])
        split = "train" if "train" in ds else sorted(ds)[0]
        ds = ds[split]
    records = ds.to_list()
    return RawTable(p, "row", [Row(i, r) for i, r in enumerate(records, start=1)], [])
