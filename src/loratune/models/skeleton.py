"""Build a model's skeleton on the ``meta`` device (shapes, no weights) and read its anatomy.

Catalog models come from their verified snapshot and never import torch; directories and GGUF
files are read with transformers (config only) and built on ``meta``.
"""

from __future__ import annotations

import json
from typing import Any

from loratune.anatomy.snapshot import from_snapshot
from loratune.anatomy.types import Anatomy
from loratune.errors import ModelSourceError
from loratune.models.catalog import catalog_config, catalog_snapshot
from loratune.models.source import ModelSource, embedded_gguf

# Tried in order when the config names no architecture class transformers knows.
_AUTO_CLASSES = ("AutoModelForCausalLM", "AutoModelForSeq2SeqLM", "AutoModelForMaskedLM", "AutoModel")


def load_anatomy(source: ModelSource) -> Anatomy:
    if source.kind == "catalog":
        snap = catalog_snapshot(source.name)
        if snap is not None:
            return from_snapshot(snap, source=source.name)
        return anatomy_from_config(catalog_config(source.name), source=source.name)
    return anatomy_from_config(read_config(source), source=source.label)


def read_config(source: ModelSource) -> dict[str, Any]:
    """The config as a plain dict (``model_type`` included) for any source."""
    if source.kind == "catalog":
        return catalog_config(source.name)
    assert source.path is not None
    if source.kind == "directory":
        path = source.path / "config.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelSourceError(f"cannot read {path}: {e}", "fix or regenerate config.json") from None
        if not isinstance(data, dict) or "model_type" not in data:
            raise ModelSourceError(f"{path} has no model_type", "a transformers config.json names its model_type")
        return data
    return gguf_config(source)


def gguf_config(source: ModelSource) -> dict[str, Any]:
    path = source.path if source.path is not None else embedded_gguf()
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
    except Exception as e:  # gguf's reader raises many types on a damaged file
        raise ModelSourceError(
            f"cannot read the GGUF file {path}: {type(e).__name__}: {str(e)[:160]}",
            "check that the file is a complete GGUF of an architecture transformers supports",
        ) from None
    return config.to_dict()


def build_meta_model(config_dict: dict[str, Any]) -> Any:
    """Instantiate the model on the meta device: every module with its real shape, no memory."""
    import torch
    import transformers

    cfg = dict(config_dict)
    model_type = cfg.pop("model_type")
    cfg.pop("_source", None)
    try:
        config = transformers.AutoConfig.for_model(model_type, **cfg)
    except (ValueError, KeyError) as e:
        raise ModelSourceError(
            f"transformers does not know model_type {model_type!r} ({e})",
            "loratune runs no remote code; use a model whose architecture ships with transformers",
        ) from None
    archs = getattr(config, "architectures", None) or []
    cls = getattr(transformers, archs[0], None) if archs else None
    with torch.device("meta"):
        if cls is not None and hasattr(cls, "_from_config"):
            return cls._from_config(config)
        for auto in _AUTO_CLASSES:
            try:
                return getattr(transformers, auto).from_config(config)
            except ValueError:
                continue
    raise ModelSourceError(
        f"no transformers model class for {model_type!r}", "use a causal-LM, seq2seq or encoder model"
    )


def anatomy_from_config(config_dict: dict[str, Any], *, source: str) -> Anatomy:
    from loratune.anatomy.extract import anatomy_from_model

    return anatomy_from_model(build_meta_model(config_dict), source=source)
