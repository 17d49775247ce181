"""What every command shares: the MODEL argument, JSON output, the error → exit-2 mapping, and the
output-path checks (``check_output_file(path, flag)`` / ``check_output_dir(path, flag)`` from
:mod:`loratune.outputs`: call them on ``--out`` before any work)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from loratune.anatomy.types import TargetWarning
from loratune.outputs import check_output_dir, check_output_file

__all__ = [
    "JsonOpt",
    "ModelArg",
    "check_output_dir",
    "check_output_file",
    "console",
    "err_console",
    "print_json",
    "warn_lines",
    "warning_fields",
]

console = Console()
err_console = Console(stderr=True)

ModelArg = Annotated[
    str,
    typer.Argument(
        help="A catalog name (see `loratune models`), a directory with config.json, or a .gguf file.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=_default) + "\n")


def _default(o: Any) -> Any:
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def warn_lines(warnings: Sequence[TargetWarning | str]) -> None:
    """One ``warning: …`` per warning on stderr (typed warnings, or the strings a trial record holds)."""
    for w in warnings:
        text = Text.assemble(("warning:", "yellow"), " ", w.message if isinstance(w, TargetWarning) else str(w))
        if not err_console.is_terminal:
            err_console.print(text, highlight=False, soft_wrap=True)  # one line each: grep-able in a log
            continue
        # On a terminal: wrapped at words, continuation lines indented under the message.
        for i, line in enumerate(text.wrap(err_console, max(20, err_console.width - 2))):
            line.rstrip()
            err_console.print(Text.assemble("  ", line) if i else line, highlight=False, soft_wrap=True)


def warning_fields(warnings: Sequence[TargetWarning]) -> dict[str, list[str]]:
    """The ``--json`` form: ``warnings`` stays a list of strings; ``warning_kinds`` is what to test."""
    return {"warnings": [w.message for w in warnings], "warning_kinds": [w.kind for w in warnings]}
