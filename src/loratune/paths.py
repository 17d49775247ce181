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
