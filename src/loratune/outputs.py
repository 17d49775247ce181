"""Check an output path before any work is done, so a command that cannot write its result refuses at
once (one line, exit 2) instead of after minutes of work — and never leaves half a result behind.

- :func:`check_output_file`: ``--out FILE`` (a file that will be written with
  :func:`loratune.paths.write_atomic`);
- :func:`check_output_dir`: ``--out DIR`` (a folder that will be created or filled).

Both refuse a path of the wrong kind (an existing folder where a file is meant, and the reverse), a path
under a regular file (``afile/x.json``) and a place that cannot be written (permissions, a read-only file
system, ``/proc``). Nothing is created: missing folders are made by the writer later. Writability is
probed with an anonymous temporary file in the nearest existing folder (``O_TMPFILE`` on Linux leaves
no name behind), because ``os.access`` says yes to root even where writes fail. No torch here.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from loratune.errors import ConfigError

# Files whose presence says a folder was written by `loratune train` (safe to replace whole).
ADAPTER_MARKERS = ("adapter_config.json", "metrics.json")


def check_output_file(path: Path | str, flag: str = "--out") -> Path:
    """``path`` as a file that can be written, or a :class:`ConfigError` naming ``flag`` and the path."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(f"{flag} {path} is a directory, not a file", f"give a file name, e.g. {p / 'out.json'}")
    if p.name in ("", ".", ".."):
        raise ConfigError(f"{flag} {path!s} names no file", "give a file name, e.g. out.json")
    _check_writable(_nearest_folder(p.parent, path, flag), path, flag)
    return p


def check_output_dir(path: Path | str, flag: str = "--out", *, replaceable: tuple[str, ...] | None = None) -> Path:
    """``path`` as a folder that can be created or written into, or a :class:`ConfigError`.

    ``replaceable``: the command replaces the folder whole (``train``'s adapter directory), so an existing,
    non-empty folder must hold one of these marker files — proof that it is an earlier result of the same
    kind, not someone else's files."""
    p = Path(path).expanduser()
    fix = f"pass {flag} a new (or empty) folder you can write to"
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{flag} {path} is an existing file, not a folder", fix)
    if not p.is_dir():
        _check_writable(_nearest_folder(p.parent, path, flag), path, flag)
        return p
    if replaceable is not None:
        try:
            entries = {e.name for e in p.iterdir()}
        except OSError as e:
            raise ConfigError(f"cannot read {flag} {path}: {e.strerror or e}", fix) from None
        if entries and not entries & set(replaceable):
            raise ConfigError(f"{flag} {path} is a directory with other files in it (it would be replaced)", fix)
        # replacing the folder whole means writing beside it, in its parent
        _check_writable(p.parent if p.parent != p else p, path, flag)
    _check_writable(p, path, flag)
    return p


def _nearest_folder(start: Path, given: Path | str, flag: str) -> Path:
    anc = start
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise ConfigError(f"{flag} {given} lies under {anc}, which is a file", "choose a path inside a folder")
    return anc


def _check_writable(folder: Path, given: Path | str, flag: str) -> None:
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ConfigError(
            f"{flag} {given} is not writable ({folder}: {e.strerror or e})", "choose a folder you can write to"
        ) from None


__all__ = ["ADAPTER_MARKERS", "check_output_dir", "check_output_file"]
