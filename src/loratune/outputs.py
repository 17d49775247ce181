"""Check an output path before any work is done, so a command that cannot write its result refuses at
once (one line, exit 2) instead of after minutes of work — and never leaves half a result behind.

- :func:`check_output_file`: ``--out FILE`` (a file that will be written, e.g. with
  :func:`loratune.paths.write_atomic`);
- :func:`check_output_dir`: ``--out DIR`` (a folder that will be created or filled).

Both refuse: a path whose kind is wrong (an existing folder where a file is meant, and the reverse),
a path under a regular file (``afile/x.json``), and a folder that cannot be written (permissions, a
read-only file system, ``/proc``). Nothing is created: missing folders are made by the writer later.
Writability is probed with an anonymous temporary file in the nearest existing folder (``O_TMPFILE``
on Linux leaves no name behind), because ``os.access`` says yes to root even where writes fail.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from loratune.errors import ConfigError


def check_output_file(path: Path | str, flag: str = "--out") -> Path:
    """``path`` as a file that can be written, or a :class:`ConfigError` naming ``flag`` and the path."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(f"{flag} {path} is a directory, not a file", f"give a file name, e.g. {p / 'out.json'}")
    if p.name in ("", ".", ".."):
        raise ConfigError(f"{flag} {path!s} names no file", "give a file name, e.g. out.json")
    _check_parent(p, path, flag)
    return p


def check_output_dir(path: Path | str, flag: str = "--out") -> Path:
    """``path`` as a folder that can be created or written into, or a :class:`ConfigError`."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{flag} {path} is a file, not a folder", "give a folder path (it is created if missing)")
    if p.is_dir():
        _check_writable(p, path, flag)
    else:
        _check_parent(p, path, flag)
    return p


def _check_parent(p: Path, given: Path | str, flag: str) -> None:
    anc = p.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise ConfigError(f"{flag} {given}: {anc} is a file, not a folder", "choose a path inside a folder")
    _check_writable(anc, given, flag)


def _check_writable(folder: Path, given: Path | str, flag: str) -> None:
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ConfigError(
            f"{flag} {given}: cannot write in {folder} ({e.strerror or e})", "choose a folder you can write to"
        ) from None


__all__ = ["check_output_dir", "check_output_file"]
