"""Classification data: a text (or a pair of texts) and a label per row.

Recognised columns: ``text`` or ``sentence`` (one text), ``sentence1``/``sentence2`` (a pair, as in
GLUE's MRPC/RTE), plus ``label`` (a string or an integer). A file with a label column and one of those
text layouts is read as classification by ``--format auto``; ``--format classification`` forces it.

The label set is the training split's: sorted (numerically when every label is an integer), each label's
id its position. A validation label that training never saw is an error — the classifier head has no
output for it, and its accuracy would silently be zero.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from loratune.data.readers import BadRow, RawTable, read_table
from loratune.errors import DataError

LABEL_COLUMNS = ("label", "labels")
SINGLE_COLUMNS = ("text", "sentence")
PAIR_COLUMNS = (("sentence1", "sentence2"), ("text1", "text2"), ("premise", "hypothesis"))
MAX_LISTED = 5


@dataclass(frozen=True)
class ClsExample:
    """One classification row: ``text`` (and ``text_pair`` for pair tasks) with its label as text."""

    text: str
    label: str
    text_pair: str | None = None
    line: int = 0


@dataclass(frozen=True)
class ClsLayout:
    text: str
    label: str
    text_pair: str = ""

    def describe(self) -> str:
        pair = f" + '{self.text_pair}'" if self.text_pair else ""
        return f"classification ('{self.text}'{pair} -> '{self.label}')"


def classification_layout(columns: Sequence[str]) -> ClsLayout | None:
    """The classification columns of a table, or None when it does not look like classification."""
    cols = set(columns)
    label = next((c for c in LABEL_COLUMNS if c in cols), None)
    if label is None:
        return None
    for a, b in PAIR_COLUMNS:
        if a in cols and b in cols:
            return ClsLayout(text=a, text_pair=b, label=label)
    text = next((c for c in SINGLE_COLUMNS if c in cols), None)
    return ClsLayout(text=text, label=label) if text else None


def is_classification_file(path: str | Path) -> bool:
    """Does ``path`` read as classification under ``--format auto``? (Reads the file once.)"""
    table = read_table(path)
    return classification_layout(_columns(table)) is not None


def load_cls_examples(path: str | Path) -> list[ClsExample]:
    """Every row as a :class:`ClsExample`; malformed rows are reported together in one :class:`DataError`."""
    table = read_table(path)
    if not table.rows and not table.bad:
        raise DataError(f"{table.path} holds no examples", "add rows to the file, or pass another --data")
    columns = _columns(table)
    layout = classification_layout(columns)
    if layout is None:
        raise DataError(
            f"{table.path}: expected a 'label' column and 'text' (or 'sentence', or 'sentence1'/'sentence2'), "
            f"found columns {sorted(columns)}",
            "rename the columns, or drop --format classification / --task-type seq-cls for generation data",
        )
    out: list[ClsExample] = []
    bad = list(table.bad)
    for row in table.rows:
        problem = None
        text = row.values.get(layout.text)
        pair = row.values.get(layout.text_pair) if layout.text_pair else None
        label = row.values.get(layout.label)
        if not isinstance(text, str) or not text.strip():
            problem = f"'{layout.text}' is missing or empty"
        elif layout.text_pair and (not isinstance(pair, str) or not pair.strip()):
            problem = f"'{layout.text_pair}' is missing or empty"
        elif isinstance(label, bool) or not isinstance(label, (str, int)) or not str(label).strip():
            problem = f"'{layout.label}' must be a string or an integer, got {label!r}"[:120]
        if problem:
            bad.append(BadRow(row.line, problem))
            continue
        assert isinstance(text, str)
        out.append(ClsExample(text=text, label=str(label).strip(), text_pair=pair, line=row.line))
    if bad:
        raise DataError(_bad_rows(table, bad), f"fix or remove those rows (read as {layout.describe()})")
    return out


def _columns(table: RawTable) -> list[str]:
    seen: dict[str, None] = {}
    for row in table.rows[:1000]:
        seen.update(dict.fromkeys(row.values))
    return list(seen)


def _bad_rows(table: RawTable, bad: list[BadRow]) -> str:
    bad = sorted(bad, key=lambda b: b.line)
    listed = "; ".join(f"{table.unit} {b.line}: {b.reason}" for b in bad[:MAX_LISTED])
    more = f"; and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
    return f"{table.path}: {len(bad)} malformed row(s) of {len(table.rows) + len(table.bad)} — {listed}{more}"


def label_set(train: Sequence[ClsExample]) -> tuple[str, ...]:
    """The training split's labels, sorted: numerically when all are integers, else as text."""
    labels = {ex.label for ex in train}
    if all(_is_int(x) for x in labels):
        return tuple(sorted(labels, key=int))
    return tuple(sorted(labels))


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def check_labels(train: Sequence[ClsExample], val: Sequence[ClsExample], *, where: str = "the data") -> tuple[str, ...]:
    """The label set of ``train``; a :class:`DataError` if ``val`` holds a label training never saw,
    or training has fewer than two classes."""
    labels = label_set(train)
    if len(labels) < 2:
        raise DataError(
            f"{where}: the training split has {len(labels)} class(es) ({', '.join(labels) or 'none'})",
            "a classifier needs at least two labels in the training data",
        )
    known = set(labels)
    unseen = [ex for ex in val if ex.label not in known]
    if unseen:
        names = sorted({ex.label for ex in unseen})
        shown = ", ".join(repr(n) for n in names[:MAX_LISTED]) + (" …" if len(names) > MAX_LISTED else "")
        raise DataError(
            f"{where}: validation has label(s) {shown} that the training split never saw "
            f"({len(unseen)} row(s), first at line {unseen[0].line}); training labels: {', '.join(labels)}",
            "add training examples of those labels, fix the labels, or pass a --val-data whose labels all occur in "
            "--data",
        )
    return labels


def class_counts(examples: Sequence[ClsExample], labels: Sequence[str]) -> dict[str, int]:
    counts = Counter(ex.label for ex in examples)
    return {label: counts.get(label, 0) for label in labels}


def describe_counts(counts: dict[str, int]) -> str:
    """``negative 512, positive 488`` (the order of the label ids)."""
    return ", ".join(f"{label} {n:,}" for label, n in counts.items())


TASK_TYPES = ("auto", "causal-lm", "seq-cls")


def resolve_task_type(task_type: str, data: str, format: str = "auto") -> str:
    """``causal-lm`` or ``seq-cls`` for ``--task-type`` (``auto``: from ``--format`` and the data's columns)."""
    from loratune.data.demo import resolve_data_arg
    from loratune.errors import ConfigError

    if task_type not in TASK_TYPES:
        raise ConfigError(f"unknown task type {task_type!r}", f"use one of {', '.join(TASK_TYPES)}")
    if format == "classification":
        if task_type == "causal-lm":
            raise ConfigError(
                "--format classification needs --task-type seq-cls", "drop --task-type or pass --task-type seq-cls"
            )
        return "seq-cls"
    if task_type != "auto":
        if task_type == "seq-cls" and format != "auto":
            raise ConfigError(
                f"--task-type seq-cls reads classification data, not --format {format}",
                "drop --format or pass --format classification",
            )
        return task_type
    if format != "auto":
        return "causal-lm"
    return "seq-cls" if is_classification_file(resolve_data_arg(data)) else "causal-lm"


@dataclass
class ClsRaw:
    """Classification rows as read (``val_examples``: a separate validation file, else None)."""

    examples: list[ClsExample]
    val_examples: list[ClsExample] | None
    path: str


def read_cls(data: str, *, val_data: str | None = None) -> ClsRaw:
    """Read (and check) the classification files before any model is loaded."""
    from loratune.data.demo import resolve_data_arg

    path = resolve_data_arg(data)
    val = load_cls_examples(resolve_data_arg(val_data)) if val_data else None
    return ClsRaw(load_cls_examples(path), val, str(path))
