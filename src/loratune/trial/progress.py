"""Progress on stderr for ``train`` and ``eval``: a live bar with an ETA in a terminal, plain lines elsewhere.

In a terminal, rich's live bar (description, bar, done/total, the caller's info, elapsed, remaining);
the bar shrinks to what the width leaves, so it fits 80 columns. In a pipe or a log file a live
display would have nothing to redraw, so it prints one plain line (no colour codes, no carriage
returns) about every 10 % of the work and at the end, each with its elapsed time and ETA.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, TextIO

LINES = 10  # plain lines per run in a pipe (plus the last one)


class Tracker:
    """What the work loop calls: ``advance(info="loss 2.31  4,100 tok/s")`` after each unit."""

    def advance(self, n: int = 1, *, info: str = "") -> None:
        pass


class _Live(Tracker):
    def __init__(self, bar: Any, task: Any) -> None:
        self._bar, self._task = bar, task

    def advance(self, n: int = 1, *, info: str = "") -> None:
        self._bar.update(self._task, advance=n, info=info)


class _Lines(Tracker):
    def __init__(self, description: str, total: int, stream: IO[str], lines: int = LINES) -> None:
        self.description, self.total, self.stream = description, total, stream
        self.every = max(1, math.ceil(total / lines))
        self.done = 0
        self.started = time.perf_counter()

    def advance(self, n: int = 1, *, info: str = "") -> None:
        before = self.done
        self.done += n
        if self.done // self.every > before // self.every or self.done >= self.total:
            self.stream.write(self.line(info) + "\n")
            self.stream.flush()

    def line(self, info: str) -> str:
        elapsed = time.perf_counter() - self.started
        left = elapsed / self.done * max(0, self.total - self.done) if self.done else math.nan
        parts = [f"{self.description} {self.done}/{self.total}", info, f"{_clock(elapsed)} elapsed, eta {_clock(left)}"]
        return "  ".join(p for p in parts if p)


def _clock(seconds: float) -> str:
    """``h:mm:ss`` like rich's time columns; ``-:--:--`` while unknown."""
    if not math.isfinite(seconds):
        return "-:--:--"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


@contextmanager
def progress(description: str, total: int, *, enabled: bool = True, stream: TextIO | None = None) -> Iterator[Tracker]:
    """``with progress("training", 100) as bar: ... bar.advance(info=...)``; silent when not ``enabled``."""
    if not enabled or total < 1:
        yield Tracker()
        return
    from rich.console import Console

    console = Console(file=stream or sys.stderr)
    if not console.is_terminal or console.is_dumb_terminal:
        yield _Lines(description, total, console.file)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    with bar:
        yield _Live(bar, bar.add_task(description, total=total, info=""))
