"""Check an output directory before any work starts, so a run never trains for minutes and then
fails to save (or replaces a folder that was not its own). No torch; nothing is left behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from loratune.errors import ConfigError

# Files whose presence says a directory was written by `loratune train` (safe to replace whole).
ADAPTER_MARKERS = ("adapter_config.json", "metrics.json")


def check_output_dir(path: Path, flag: str = "--out", *, replaceable: tuple[str, ...] = ADAPTER_MARKERS) -> None:
    """Refuse, with one line naming ``flag``, an output directory that cannot be written:
    an existing regular file, a path under a regular file, a parent that refuses a new entry
    (``/proc/x``, a read-only mount), or an existing non-empty directory that holds none of
    ``replaceable`` (writing there would replace someone else's files). The write test makes and
    removes one empty temp directory in the nearest existing parent."""
    path = Path(path).expanduser()
    fix = f"pass a new (or empty) directory to {flag}"
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is an existing file, not a directory", fix)
    ancestor = path if path.exists() else path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"{flag} {path} lies under {ancestor}, which is a file", fix)
    if path.is_dir():
        try:
            entries = {p.name for p in path.iterdir()}
        except OSError as e:
            raise ConfigError(f"cannot read {flag} {path}: {e.strerror or e}", fix) from None
        if entries and not entries & set(replaceable):
            raise ConfigError(
                f"{flag} {path} is a directory with other files in it (it would be replaced)",
                f"{fix}, or a previous adapter directory",
            )
        ancestor = path.parent if path.parent.exists() else path
    probe_in = ancestor
    try:
        os.rmdir(tempfile.mkdtemp(dir=probe_in, prefix=".loratune-write-test-"))
    except OSError as e:
        raise ConfigError(f"{flag} {path} is not writable ({probe_in}: {e.strerror or e})", fix) from None
