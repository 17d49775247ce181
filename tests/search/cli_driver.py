"""Run ``search``/``report`` as the installed CLI would (used by the subprocess tests)."""

from __future__ import annotations

import sys

import typer

from loratune.cli.report_cmd import report
from loratune.cli.search_cmd import search
from loratune.errors import LoratuneError

app = typer.Typer(pretty_exceptions_enable=False)
app.command()(search)
app.command()(report)

if __name__ == "__main__":
    try:
        app()
    except LoratuneError as e:
        print(f"error: {e.one_line()}", file=sys.stderr)
        sys.exit(2)
