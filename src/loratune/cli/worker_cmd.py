"""``loratune worker --storage URL [--study NAME]`` (or ``--out DIR``): join a running search from this
machine and train its runs until it is done. The search's options, its model and data come from the study
(the worker refuses to train when its code, model or data would give other numbers)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from loratune.cli.common import console
from loratune.errors import ConfigError


def worker(
    storage: Annotated[
        str | None, typer.Option("--storage", help="The search's Optuna storage URL (e.g. postgresql://…).")
    ] = None,
    study: Annotated[str, typer.Option("--study", help="Study name in that storage.")] = "loratune",
    out: Annotated[
        Path | None, typer.Option("--out", help="Or: the search's --out directory on this machine (its study file).")
    ] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads for torch.")] = None,
    device: Annotated[
        str | None,
        typer.Option("--device", help="Where this worker trains: cpu, cuda, cuda:N (default: the search's)."),
    ] = None,
    index: Annotated[
        int | None, typer.Option("--index", help="This worker's number (seeds its sampler; default: from its pid).")
    ] = None,
) -> None:
    """Train runs of a search that is running elsewhere (one worker; start several for more)."""
    from loratune.search.run import _optuna_verbosity
    from loratune.search.storage import local_storage
    from loratune.search.workers import run_worker
    from loratune.trial.runner import quiet_libraries

    if (storage is None) == (out is None):
        raise ConfigError("pass either --storage URL or --out DIR", "e.g. loratune worker --storage postgresql://…")
    url = storage or local_storage(Path(out or "."), 1)
    quiet_libraries()
    with _optuna_verbosity(True):
        # Another machine's worker must not sample what the local ones sample: a seed of its own.
        me = index if index is not None else 100 + os.getpid() % 10_000
        run_worker(url, study, index=me, threads=threads, device=device,
                   say=lambda s: console.print(escape(s), highlight=False, soft_wrap=True))  # fmt: skip


__all__ = ["worker"]
