"""The ``loratune`` command. Each command lives in its own module.

Exit codes: 0 success; 1 a run that finished but failed (a diverged trial); 2 bad input of any kind —
a ``LoratuneError`` from the library or a usage error from the parser (unknown option, wrong type,
missing argument), printed as one line or typer's short usage message; 130 Ctrl-C, with one line saying
what was kept.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from loratune.cli.budget_cmd import budget
from loratune.cli.common import err_console
from loratune.cli.eval_cmd import evaluate
from loratune.cli.inspect_cmd import inspect
from loratune.cli.interrupt import interrupt_note, reset
from loratune.cli.models_cmd import models
from loratune.cli.recommend_cmd import recommend_cmd
from loratune.cli.report_cmd import report
from loratune.cli.search_cmd import search
from loratune.cli.train_cmd import train
from loratune.cli.worker_cmd import worker
from loratune.errors import LoratuneError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention

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
app.command()(worker)


def _usage_error_types() -> tuple[type[BaseException], ...]:
    """Usage errors as typer raises them. typer ≥ 0.20 vendors click (``typer._click``), whose exceptions
    are no subclass of the ``click`` package's: catch both, so neither can become a traceback."""
    types: list[type[BaseException]] = [typer.TyperException]
    try:
        import click

        types.append(click.exceptions.ClickException)
    except ImportError:  # click is no longer a dependency of typer
        pass
    return tuple(types)


def _abort_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [typer.Abort]
    try:
        import click

        types.append(click.exceptions.Abort)
    except ImportError:
        pass
    return tuple(types)


def _interrupt_types() -> tuple[type[BaseException], ...]:
    return (KeyboardInterrupt, *_abort_types())


def run(argv: list[str] | None = None) -> int:
    """Run one command line and return its exit code (what ``main`` exits with; tests call this)."""
    reset()
    try:
        rc: Any = app(args=argv, standalone_mode=False)
    except LoratuneError as e:
        err_console.print(f"[red]error:[/] {e.one_line()}", highlight=False, soft_wrap=True)
        return EXIT_USAGE
    except _usage_error_types() as e:
        e.show()  # type: ignore[attr-defined]
        return int(getattr(e, "exit_code", EXIT_USAGE))
    except typer.Exit as e:
        return int(e.exit_code)
    except _interrupt_types():
        return _interrupted()
    # typer turns Ctrl-C into Exit(130) and returns the code when not standalone
    if rc == EXIT_INTERRUPTED:
        return _interrupted()
    return rc if isinstance(rc, int) else 0


def _interrupted() -> int:
    err_console.print(f"interrupted: {interrupt_note()}", highlight=False, soft_wrap=True)
    return EXIT_INTERRUPTED


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
