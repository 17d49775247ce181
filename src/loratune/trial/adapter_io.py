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

from loratune.errors import ConfigError, TrialError, UnsafeWeightsError

METRICS_FILE = "metrics.json"
CONFIG_FILE = "adapter_config.json"
SAFE_WEIGHTS = "adapter_model.safetensors"
PICKLE_WEIGHTS = "adapter_model.bin"
# The adapter types a loratune trial trains and evaluates (PEFT's ``peft_type``; DoRA is LORA + use_dora).
PEFT_TYPES = ("LORA", "ADALORA")
_FIX = "pass the --out directory of `loratune train` (or a PEFT LoRA adapter saved with save_pretrained)"


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


def check_adapter_dir(directory: Path, *, allow_pickle: bool = False) -> dict[str, Any]:
    """The adapter's config, after every check that needs no torch: a directory, a readable
    ``adapter_config.json`` (an object, a ``peft_type`` loratune evaluates), weights that are there and
    safe to read — safetensors with a sound header, or pickle (``adapter_model.bin``) only with
    ``allow_pickle``. Each problem is one error naming the directory (or file)."""
    from loratune.models.weights import check_safetensors
    from loratune.paths import read_json_file

    directory = Path(directory)
    if not directory.exists():
        raise ConfigError(f"adapter directory {directory} does not exist", _FIX)
    if not directory.is_dir():
        raise ConfigError(f"{directory} is a file, not an adapter directory", _FIX)
    if not (directory / CONFIG_FILE).exists():
        raise ConfigError(f"{directory} is not a PEFT adapter (no {CONFIG_FILE})", _FIX)
    config = read_json_file(directory / CONFIG_FILE, what="the adapter config", fix=_FIX)
    if not isinstance(config, dict):
        raise ConfigError(f"{directory / CONFIG_FILE} is not a JSON object", _FIX)
    peft_type = config.get("peft_type")
    if peft_type not in PEFT_TYPES:
        raise ConfigError(
            f"{directory / CONFIG_FILE}: peft_type {peft_type!r} is not an adapter loratune evaluates",
            f"use a {' or '.join(PEFT_TYPES)} adapter",
        )
    safe, pickled = directory / SAFE_WEIGHTS, directory / PICKLE_WEIGHTS
    if safe.is_file():
        check_safetensors(safe)
    elif pickled.is_file():
        if not allow_pickle:
            raise UnsafeWeightsError(
                f"{pickled} is a pickle file; loading pickle can run arbitrary code",
                "re-save the adapter with safetensors, or pass --allow-pickle if you trust the file",
            )
    else:
        raise ConfigError(f"{directory} holds {CONFIG_FILE} but no weights ({SAFE_WEIGHTS})", _FIX)
    return config


def load_adapter(base: Any, directory: Path) -> Any:
    """``PeftModel.from_pretrained`` (frozen), with PEFT's refusals at this boundary — targets the model
    lacks, shapes or ranks that do not fit, weights that name no module of the adapter — turned into
    one :class:`TrialError` naming the adapter directory and the mismatch. Call
    :func:`check_adapter_dir` first (pickle and corrupt files are refused there)."""
    import warnings

    from peft import PeftModel

    fix = "evaluate the adapter with the base model it was trained on"
    # Recorded under the caller's filters (what they silence stays silent), PEFT's one warning always.
    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("always", message=".*missing adapter keys")
        try:
            model = PeftModel.from_pretrained(base, str(directory), is_trainable=False)
        except (ValueError, RuntimeError, KeyError, TypeError, AttributeError) as e:
            raise TrialError(f"the adapter {directory} does not fit the model: {_first_line(e)}", fix) from None
    # PEFT only warns when adapter weights are missing (its load result is not returned by from_pretrained).
    missing = [str(w.message) for w in caught if "missing adapter keys" in str(w.message)]
    for w in caught:  # the rest are shown as they would have been
        if str(w.message) not in missing:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if missing:
        model.unload()
        raise TrialError(f"the adapter {directory} does not fit the model: {missing[0][:200]}", fix)
    return model


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = " ".join(lines[:2]) if lines else type(e).__name__
    return text if len(text) <= 240 else text[:239] + "…"
