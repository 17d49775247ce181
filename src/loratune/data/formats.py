"""Recognise a dataset's format from its columns and turn rows into :class:`Example`.

Formats: ``prompt-response`` (any configured pair, or a common alias such as question/answer),
``alpaca`` (instruction / optional input / output), ``chat`` (a list of {role, content} messages,
ShareGPT's {from, value} accepted) and ``text`` (plain language-modelling text).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loratune.data.readers import BadRow, RawTable, Row, read_table
from loratune.data.types import FORMATS, Example
from loratune.errors import DataError

# Column pairs recognised as prompt/response when the configured names are absent; first match wins.
PAIR_ALIASES: tuple[tuple[str, str], ...] = (
    ("prompt", "response"),
    ("prompt", "completion"),
    ("question", "answer"),
    ("instruction", "response"),
    ("instruction", "output"),
    ("input", "output"),
    ("query", "response"),
    ("source", "target"),
)
CHAT_ALIASES = ("messages", "conversations", "conversation")
TEXT_ALIASES = ("text", "content")
_ROLE_ALIASES = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant"}
_ROLES = ("system", "user", "assistant")
MAX_LISTED = 5  # bad rows quoted in one error message


@dataclass(frozen=True)
class Layout:
    """A resolved format plus the columns it reads."""

    format: str
    prompt: str = ""
    response: str = ""
    input: str = ""  # alpaca's optional context column
    messages: str = ""
    text: str = ""

    def describe(self) -> str:
        if self.format == "chat":
            return f"chat (column '{self.messages}')"
        if self.format == "text":
            return f"text (column '{self.text}')"
        if self.format == "alpaca":
            return f"alpaca ('{self.prompt}', '{self.input}', '{self.response}')"
        return f"prompt-response ('{self.prompt}' -> '{self.response}')"


def load_examples(
    path: str | Path,
    *,
    format: str = "auto",
    prompt_column: str = "prompt",
    response_column: str = "response",
    messages_column: str = "messages",
    text_column: str = "text",
) -> list[Example]:
    """Read ``path`` and return its examples; every malformed row is reported in one :class:`DataError`."""
    if format not in FORMATS:
        raise DataError(f"unknown data format '{format}'", f"use one of: {', '.join(FORMATS)}")
    table = read_table(path)
    if not table.rows and not table.bad:
        raise DataError(f"{table.path} holds no examples", "add rows to the file, or pass another --data")
    if not table.rows:  # every row unreadable: the columns are unknown, report the rows
        raise DataError(_bad_rows_message(table, table.bad, len(table.bad)), "fix or remove those rows")
    columns = _columns(table.rows)
    layout = resolve_layout(
        columns,
        format,
        prompt_column=prompt_column,
        response_column=response_column,
        messages_column=messages_column,
        text_column=text_column,
        where=str(table.path),
    )
    convert = _CONVERTERS[layout.format]
    examples: list[Example] = []
    bad = list(table.bad)
    for row in table.rows:
        try:
            examples.append(convert(row, layout))
        except _RowProblem as e:
            bad.append(BadRow(row.line, str(e)))
    if bad:
        raise DataError(_bad_rows_message(table, bad, len(table.rows) + len(table.bad)), _hint(layout))
    return examples


def _columns(rows: list[Row]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows[:1000]:  # rows of one file share their columns; 1000 covers sparse JSONL keys
        seen.update(dict.fromkeys(row.values))
    return list(seen)


def resolve_layout(
    columns: list[str],
    format: str,
    *,
    prompt_column: str = "prompt",
    response_column: str = "response",
    messages_column: str = "messages",
    text_column: str = "text",
    where: str = "the data",
) -> Layout:
    """Pick the format (for ``auto``) and the columns to read; configured names win over aliases."""
    cols = set(columns)
    # A column the user named explicitly must exist: falling back to an alias would hide a typo.
    for given, default, option in (
        (prompt_column, "prompt", "--prompt-column"),
        (response_column, "response", "--response-column"),
        (messages_column, "messages", "messages_column"),  # no CLI flag: the Python API's names
        (text_column, "text", "text_column"),
    ):
        if given != default and given not in cols:
            raise DataError(f"{where}: no column '{given}' (found {sorted(cols)})", f"fix {option}")

    def first(options: tuple[str, ...]) -> str:
        return next((c for c in options if c in cols), "")

    chat_col = messages_column if messages_column in cols else first(CHAT_ALIASES)
    text_col = text_column if text_column in cols else first(TEXT_ALIASES)
    alpaca = "instruction" in cols and "output" in cols
    if prompt_column in cols and response_column in cols:
        pair: tuple[str, str] | None = (prompt_column, response_column)
    else:
        pair = next(((p, r) for p, r in PAIR_ALIASES if p in cols and r in cols), None)

    if format == "auto":
        if chat_col:
            format = "chat"
        elif alpaca and pair in (None, ("instruction", "output")):
            format = "alpaca"
        elif pair:
            format = "prompt-response"
        elif text_col:
            format = "text"
        else:
            raise DataError(
                f"{where}: cannot tell the format from the columns {sorted(cols)}",
                "name the columns prompt/response (or question/answer, instruction/input/output), messages or "
                "text, or pass --prompt-column and --response-column (and --format)",
            )

    if format == "classification":
        raise DataError(
            f"{where}: classification data trains a classifier, not a language model", "use --task-type seq-cls"
        )
    if format == "chat":
        if not chat_col:
            raise _missing(where, cols, f"a messages column ('{messages_column}')", "", rename=CHAT_ALIASES)
        return Layout("chat", messages=chat_col)
    if format == "text":
        if not text_col:
            raise _missing(where, cols, f"a text column ('{text_column}')", "", rename=TEXT_ALIASES)
        return Layout("text", text=text_col)
    if format == "alpaca":
        if not alpaca:
            raise _missing(where, cols, "columns 'instruction' and 'output'", "--format prompt-response")
        return Layout("alpaca", prompt="instruction", input="input", response="output")
    if not pair:
        raise _missing(
            where, cols, f"columns '{prompt_column}' and '{response_column}'", "--prompt-column/--response-column"
        )
    return Layout("prompt-response", prompt=pair[0], response=pair[1])


def _missing(where: str, cols: set[str], what: str, option: str, rename: tuple[str, ...] = ()) -> DataError:
    if rename:  # no flag picks this column: name what it may be called
        fix = f"rename the column to {' or '.join(repr(n) for n in rename)}, or pass another --format"
    else:
        fix = f"rename the columns or pass {option}"
    return DataError(f"{where}: expected {what}, found columns {sorted(cols)}", fix)


class _RowProblem(Exception):
    """One row cannot become an example; the message says why (collected, then reported together)."""


def _field(row: Row, column: str, *, required: bool = True) -> str:
    value = row.values.get(column)
    if value is None:
        if required:
            raise _RowProblem(f"'{column}' is missing")
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _RowProblem(f"'{column}' must be text, got {type(value).__name__}")
    text = str(value)
    if required and not text.strip():
        raise _RowProblem(f"'{column}' is empty")
    return text


def _prompt_response(row: Row, layout: Layout) -> Example:
    prompt = _field(row, layout.prompt)
    return Example(prompt=prompt, response=_field(row, layout.response), line=row.line)


def _alpaca(row: Row, layout: Layout) -> Example:
    instruction = _field(row, layout.prompt)
    context = _field(row, layout.input, required=False).strip()
    # The Alpaca convention: the optional input follows the instruction after a blank line.
    prompt = f"{instruction}\n\n{context}" if context else instruction
    return Example(prompt=prompt, response=_field(row, layout.response), line=row.line)


def _text(row: Row, layout: Layout) -> Example:
    return Example(prompt="", response=_field(row, layout.text), line=row.line)


def _chat(row: Row, layout: Layout) -> Example:
    raw = row.values.get(layout.messages)
    if isinstance(raw, str):  # CSV cells hold the list as JSON text
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as e:
            raise _RowProblem(f"'{layout.messages}' is not valid JSON ({e.msg})") from None
    if not isinstance(raw, (list, tuple)) or not raw:
        raise _RowProblem(f"'{layout.messages}' must be a non-empty list of messages")
    messages: list[dict[str, Any]] = []
    for k, m in enumerate(raw, start=1):
        if not isinstance(m, dict):
            raise _RowProblem(f"message {k} is not an object")
        role = m.get("role", m.get("from"))
        content = m.get("content", m.get("value"))
        role = _ROLE_ALIASES.get(str(role), role)
        if role not in _ROLES:
            raise _RowProblem(f"message {k} has role {role!r}; expected one of {', '.join(_ROLES)}")
        if not isinstance(content, str):
            raise _RowProblem(f"message {k} has no text content")
        messages.append({"role": role, "content": content})
    answers = [m["content"] for m in messages if m["role"] == "assistant" and m["content"].strip()]
    if not answers:
        raise _RowProblem("no assistant message with text (nothing to learn)")
    prompt = next((m["content"] for m in messages if m["role"] == "user"), "")
    return Example(prompt=prompt, response=answers[-1], messages=tuple(messages), line=row.line)


_CONVERTERS: dict[str, Callable[[Row, Layout], Example]] = {
    "prompt-response": _prompt_response,
    "alpaca": _alpaca,
    "text": _text,
    "chat": _chat,
}


def _bad_rows_message(table: RawTable, bad: list[BadRow], total: int) -> str:
    bad = sorted(bad, key=lambda b: b.line)
    listed = "; ".join(f"{table.unit} {b.line}: {b.reason}" for b in bad[:MAX_LISTED])
    more = f"; and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
    noun = "row" if len(bad) == 1 else "rows"
    return f"{table.path}: {len(bad)} malformed {noun} of {total} — {listed}{more}"


def _hint(layout: Layout) -> str:
    return f"fix or remove those rows (read as {layout.describe()})"
