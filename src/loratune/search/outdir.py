"""An output folder checked before any work (``search --out``, ``report --out``), and removed again when
what was to fill it fails to open.

A folder is usable when it is a directory or can be made one: not an existing regular file, not under
one, and its nearest existing ancestor takes a new entry (probed by making and removing a temporary
directory there: root passes ``os.access`` on read-only places such as ``/proc``). Nothing is left
behind by the check.

(``cli/common.py`` is getting a shared output-path helper; this one is the search's and the report's own,
on folders, and may be folded into it.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from loratune.errors import ConfigError


def check_out_dir(path: Path, *, flag: str = "--out") -> None:
    """Raise ConfigError unless ``path`` is, or can become, a writable directory. Creates nothing."""
    path = Path(path)
    fix = f"pass {flag} a folder path you can write to"
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is an existing file, not a folder", fix)
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"{flag} {path} lies under {probe}, which is a file", fix)
    try:
        os.rmdir(tempfile.mkdtemp(dir=probe, prefix=".loratune-probe-"))
    except OSError as e:
        raise ConfigError(f"{flag} {path} is not writable ({e.strerror or type(e).__name__} in {probe})", fix) from None


@contextlib.contextmanager
def removed_on_failure(path: Path) -> Iterator[None]:
    """Run the block; if it raises and ``path`` did not exist before it, remove ``path`` (and the parents
    the block made) again, so a failed start leaves no empty study folder behind."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists() and p.parent != p:
        missing.append(p)
        p = p.parent
    try:
        yield
    except BaseException:
        for made in missing:  # deepest first; only what this call created
            if made == path:
                shutil.rmtree(made, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    made.rmdir()  # a parent is removed only when empty
        raise
