"""Where loratune keeps what it builds once: the dense copy of the embedded model, demo data."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """``$LORATUNE_CACHE`` or ``~/.cache/loratune``, plus ``parts``; created on first use."""
    root = Path(os.environ.get("LORATUNE_CACHE") or Path.home() / ".cache" / "loratune")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write via a temp file in the same folder + rename: a crash never leaves a half-written file,
    and a reader sees either the old content or the new."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    raw = data if isinstance(data, bytes) else data.encode("utf-8")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; these are ordinary output files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
