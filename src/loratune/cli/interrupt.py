"""What a command tells the user when Ctrl-C stops it: what was kept, and how to go on.

A command that writes as it goes (a search persists every finished run) registers its note before the
long work starts; ``cli/app.py`` prints it as the one line of an interrupted run (exit code 130)."""

from __future__ import annotations

_DEFAULT = "nothing was kept"
_note = _DEFAULT


def keep_note(note: str) -> None:
    """Say what survives an interrupt from here on (e.g. "finished runs are in runs/x/study.db")."""
    global _note
    _note = note


def interrupt_note() -> str:
    return _note


def reset() -> None:
    """Forget the note (one process may run several commands: tests, notebooks)."""
    global _note
    _note = _DEFAULT
