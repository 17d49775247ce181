"""The ``loratune`` command. Each command lives in its own module; user errors exit with code 2."""

from __future__ import annotations

import sys

import typer

from loratune.cli.budget_cmd import budget
from loratune.cli.common import err_console
from loratune.cli.eval_cmd import evaluate
from loratune.cli.inspect_cmd import inspect
from loratune.cli.models_cmd import models
from loratune.cli.recommend_cmd import recommend_cmd
from loratune.cli.report_cmd import report
from loratune.cli.search_cmd import search
from loratune.cli.train_cmd import train
from loratune.errors import LoratuneError

app = typer.Typer(
    name="loratune",
    help="Pick LoRA hyperparameters by evidence: inspect, budget, recommend, train, search, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(models)
app.command()(inspect)
app.command()(budget)
app.command("recommend")(recommend_cmd)
app.command()(train)
app.command("eval")(evaluate)
app.command()(search)
app.command()(report)


def main() -> None:
    try:
        app(standalone_mode=False)
    except LoratuneError as e:
        err_console.print(f"[red]error:[/] {e.one_line()}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except Exception as e:  # click's usage errors
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
