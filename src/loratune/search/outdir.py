"""A study folder removed again when what was to fill it fails to open (the check before any work is
:func:`loratune.outputs.check_output_dir`, shared by every command)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path


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
