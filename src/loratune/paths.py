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


def read_json_file(path: Path, *, what: str, fix: str, error: type[Exception] | None = None) -> object:
    """Parse a JSON file the user handed us; every way it can be unreadable is one ``LoratuneError``
    naming the file (and the line and column of a syntax error), never a traceback.

    ``what`` names the file's role in the message ("the --config file"); ``fix`` says what to do."""
    import json

    from loratune.errors import ConfigError

    err = error or ConfigError
    if path.is_dir():
        raise err(f"{what} {path} is a directory", fix)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise err(f"{what} {path} does not exist", fix) from None
    except UnicodeDecodeError as e:
        raise err(f"{what} {path} is not UTF-8 text (byte {e.start})", fix) from None
    except OSError as e:
        raise err(f"cannot read {what} {path}: {e.strerror or e}", fix) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise err(f"{what} {path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})", fix) from None
    except RecursionError:
        raise err(f"{what} {path} is nested too deeply to be a config", fix) from None
