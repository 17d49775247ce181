"""Export a recommended config to PEFT, Axolotl, LLaMA-Factory, Unsloth and torchtune.

``export_config(fmt, recommendation_dict, model_name)``: ``recommendation_dict`` is
``Recommendation.to_dict()`` (only its ``config`` — PEFT LoraConfig kwargs, read into an AdapterSpec by
``budget.spec.split_peft_kwargs`` — and ``training`` keys are read). ``model_name`` is loratune's MODEL
argument: a catalog name is written as the Hub id it records, a directory or .gguf as its absolute path,
and each file says which in a comment. A setting a format has no key for is a ``CANNOT EXPRESS`` comment;
a model or target it cannot take at all (torchtune without a released builder, AdaLoRA outside PEFT)
is a ConfigError. No torch here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loratune.errors import ConfigError
from loratune.export.axolotl import export_axolotl
from loratune.export.llamafactory import export_llamafactory
from loratune.export.peft import export_peft_json, export_peft_python
from loratune.export.torchtune import export_torchtune
from loratune.export.unsloth import export_unsloth

_EXPORTERS: dict[str, Callable[[dict[str, Any], str], str]] = {
    "peft": export_peft_json,
    "peft-python": export_peft_python,
    "axolotl": export_axolotl,
    "llamafactory": export_llamafactory,
    "unsloth": export_unsloth,
    "torchtune": export_torchtune,
}
FORMATS: tuple[str, ...] = tuple(_EXPORTERS)
# File suffix per format, for a default --out name.
SUFFIXES = {
    "peft": ".json",
    "peft-python": ".py",
    "axolotl": ".yaml",
    "llamafactory": ".yaml",
    "unsloth": ".py",
    "torchtune": ".yaml",
}


def export_config(fmt: str, recommendation_dict: dict[str, Any], model_name: str) -> str:
    key = fmt.strip().lower()
    if key not in _EXPORTERS:
        raise ConfigError(f"unknown export format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    return _EXPORTERS[key](recommendation_dict, model_name)


__all__ = ["FORMATS", "SUFFIXES", "export_config"]
