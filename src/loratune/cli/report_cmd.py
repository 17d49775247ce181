"""``loratune report STUDY``: every trial, the figures, the chosen config and why — one HTML file.

The study is read from STUDY/study.db, opened read-only, or from ``--storage`` when given on the command
line; a URL written in the folder's files is never followed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from loratune.cli.common import console


def report(
    study: Annotated[Path, typer.Argument(help="The --out directory of `loratune search`.", show_default=False)],
    out: Annotated[Path | None, typer.Option("--out", help="Where to write report.html (default: STUDY).")] = None,
    storage: Annotated[
        str | None, typer.Option("--storage", help="Optuna storage URL, when the search used --storage.")
    ] = None,
) -> None:
    """Write a self-contained report.html (plots inlined) and the PNGs beside it."""
    from loratune.report import load_study, write_report

    data = load_study(study, storage)
    written = write_report(data, out or study)
    if data.choice is not None:
        console.print(
            f"[bold green]chosen:[/] {escape(data.choice.chosen.variant.label())} — {escape(data.choice.reason())}",
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print("no variant finished with a finite validation loss yet", highlight=False, soft_wrap=True)
    for p in written:
        console.print(f"wrote {escape(str(p))}", highlight=False, soft_wrap=True)
