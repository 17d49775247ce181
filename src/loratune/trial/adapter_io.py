"""Save a trained adapter in PEFT's own format, plus ``metrics.json``, without half-written states.

The adapter is written into a temp directory next to the target and renamed into place, so a
reader (or ``PeftModel.from_pretrained``) sees either the old directory or the complete new one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from loratune.errors import TrialError

METRICS_FILE = "metrics.json"


def save_adapter(peft_model: Any, directory: Path, metrics: dict[str, Any]) -> Path:
    """``adapter_config.json`` + ``adapter_model.safetensors`` + ``metrics.json`` in ``directory``."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise TrialError(f"{directory} exists and is not a directory", "pass another --out")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; the final directory gets normal permissions
    try:
        peft_model.save_pretrained(str(tmp), safe_serialization=True)
        (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
        old = None
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
            os.replace(directory, old)
        os.replace(tmp, directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def read_metrics(directory: Path) -> dict[str, Any] | None:
    """The ``metrics.json`` a trial saved next to its adapter (None when absent or unreadable)."""
    try:
        data = json.loads((Path(directory) / METRICS_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def recorded_attention(metrics: dict[str, Any] | None) -> str | None:
    """The attention kernel the trial trained and validated with (``extra.attention`` of metrics.json)."""
    extra = (metrics or {}).get("extra")
    kernel = extra.get("attention") if isinstance(extra, dict) else None
    return kernel if isinstance(kernel, str) and kernel else None
