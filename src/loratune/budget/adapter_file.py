"""Read an adapter config file the user hands a command (``budget --config``): either ``recommend``'s
JSON (``{"config": {PEFT kwargs}, "training": {...}, ...}``) or PEFT's own ``adapter_config.json``
(the kwargs at the top level).

Every way the file can be wrong is one :class:`~loratune.errors.ConfigError` naming the file and the
place: unreadable (a directory, missing, not UTF-8, not JSON, nested too deeply — ``paths.read_json_file``),
not an object, an unknown key (with the closest real one), a value of the wrong type or out of range
(``spec.peft_fields`` and ``AdapterSpec.__post_init__``, the one reader and the one validator).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loratune.anatomy.targets import TargetSpec
from loratune.budget.spec import DEFAULT_R, AdapterSpec, check_peft_keys, default_alpha, peft_fields
from loratune.errors import ConfigError
from loratune.paths import read_json_file

# The top-level keys of ``Recommendation.to_dict()`` (advise/recommend.py): a recommend --json file.
RECOMMEND_KEYS = frozenset(
    {
        "model",
        "rules",
        "method",
        "task",
        "config",
        "training",
        "explanations",
        "trainable_params",
        "trainable_percent",
        "memory",
        "fit_steps",
        "warnings",
        "warning_kinds",
    }
)
FIX = "pass the JSON of `loratune recommend --json` or a PEFT adapter_config.json"


@dataclass(frozen=True)
class AdapterFile:
    """What the file says about the adapter: AdapterSpec keyword values it names (flags go on top) and
    the PEFT keys loratune does not model, unchanged."""

    path: Path
    values: dict[str, Any]
    extra: dict[str, Any]


def read_adapter_file(path: Path, what: str = "the --config file") -> AdapterFile:
    data = read_json_file(path, what=what, fix=FIX)
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} holds a JSON {type(data).__name__}, not an object", FIX)
    if "config" in data:
        _check_keys(data, RECOMMEND_KEYS, f"{what} {path}")
        kw, where = data["config"], f"{what} {path}, in 'config'"
        if not isinstance(kw, dict):
            raise ConfigError(f"{where}: 'config' must be an object of PEFT kwargs, got {kw!r}", FIX)
    else:
        kw, where = data, f"{what} {path}"
    check_peft_keys(kw, where, suggest=frozenset() if kw is not data else frozenset({"config"}))
    try:
        values, extra = peft_fields(kw)
        # Validate the file's values on their own, so an error names the file (flags are checked later).
        AdapterSpec(
            **{"targets": TargetSpec(("file",)), "r": DEFAULT_R, **values}
            | ({} if "alpha" in values else {"alpha": float(default_alpha(values.get("r", DEFAULT_R)))})
        )
    except ConfigError as e:
        raise ConfigError(f"{where}: {e.message}", e.hint) from None
    return AdapterFile(path, values, extra)


def _check_keys(data: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(known), n=1, cutoff=0.6)
        raise ConfigError(
            f"unknown key {unknown[0]!r} in {where}",
            f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(sorted(known))}",
        )


__all__ = ["AdapterFile", "read_adapter_file"]
