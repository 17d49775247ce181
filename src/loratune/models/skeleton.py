"""Build a model's skeleton on the ``meta`` device (shapes, no weights) and read its anatomy.

Catalog models come from their verified snapshot and never import torch; directories and GGUF
files are read with transformers (config only) and built on ``meta``.
"""

from __future__ import annotations

from typing import Any

from loratune.anatomy.snapshot import from_snapshot
from loratune.anatomy.types import Anatomy
from loratune.errors import ModelSourceError
from loratune.models.catalog import catalog_config, catalog_snapshot
from loratune.models.source import ModelSource, embedded_gguf
from loratune.paths import read_json_file

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
        data = read_json_file(
            path, what="the model config", fix="fix or regenerate config.json", error=ModelSourceError
        )
        if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
            raise ModelSourceError(f"{path} has no model_type", "a transformers config.json names its model_type")
        check_config(data, where=str(path))
        return data
    return gguf_config(source)


# Config fields that size the model: each must be a positive integer. The cap on layers is far above any
# published model (the largest open models have < 200 layers) and keeps a hostile config from making us
# build a 100,000-layer skeleton (gigabytes of module objects) before anything is checked.
_SIZE_FIELDS = (
    "num_hidden_layers",
    "n_layer",
    "num_layers",
    "hidden_size",
    "n_embd",
    "d_model",
    "intermediate_size",
    "n_inner",
    "d_ff",
    "num_attention_heads",
    "n_head",
    "num_heads",
    "num_key_value_heads",
    "vocab_size",
)
MAX_LAYERS = 1024
_LAYER_FIELDS = ("num_hidden_layers", "n_layer", "num_layers", "num_decoder_layers")
MAX_WIDTH = 1 << 20


def check_config(data: dict[str, Any], *, where: str) -> None:
    """Refuse configs loratune must not or cannot build: custom code, wrong types, absurd sizes."""
    if "auto_map" in data:
        raise ModelSourceError(
            f"{where} declares custom model code (auto_map) — loratune never runs code that ships with a model",
            "use a model whose architecture is built into transformers",
        )
    for name in _SIZE_FIELDS + _LAYER_FIELDS:
        if name not in data or data[name] is None:
            continue
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelSourceError(f"{where}: {name} must be a positive integer, got {value!r}", "fix config.json")
        limit = MAX_LAYERS if name in _LAYER_FIELDS else MAX_WIDTH * 8
        if value > limit:
            raise ModelSourceError(
                f"{where}: {name} = {value:,} is beyond any real model (max {limit:,})", "fix config.json"
            )


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
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if model_type not in CONFIG_MAPPING:  # its error lists every known type: 12,000 characters
        raise ModelSourceError(
            f"transformers {transformers.__version__} does not know model_type {model_type!r}",
            "loratune runs no remote code; use a model whose architecture ships with transformers",
        )
    try:
        config = transformers.AutoConfig.for_model(model_type, **cfg)
    except (ValueError, KeyError, TypeError, _strict_config_error()) as e:
        raise ModelSourceError(
            f"config of model_type {model_type!r} is invalid: {str(e)[:160]}", "fix config.json"
        ) from None
    archs = getattr(config, "architectures", None) or []
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise ModelSourceError(f"architectures must be a list of class names, got {archs!r}", "fix config.json")
    cls = getattr(transformers, archs[0], None) if archs else None
    try:
        with torch.device("meta"):
            if cls is not None and hasattr(cls, "_from_config"):
                return cls._from_config(config)
            for auto in _AUTO_CLASSES:
                try:
                    return getattr(transformers, auto).from_config(config)
                except ValueError:
                    continue
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, ZeroDivisionError, RuntimeError) as e:
        # A config whose fields have the wrong type or impossible values fails deep inside the model's
        # __init__; the user needs the config named, not transformers' stack.
        raise ModelSourceError(
            f"cannot build {model_type!r} from this config: {type(e).__name__}: {str(e)[:160]}", "fix config.json"
        ) from None
    raise ModelSourceError(
        f"no transformers model class for {model_type!r}", "use a causal-LM, seq2seq or encoder model"
    )


def _strict_config_error() -> type[Exception]:
    """transformers ≥ 5 validates config fields with huggingface_hub's strict dataclasses, whose error
    derives from Exception only."""
    try:
        from huggingface_hub.errors import StrictDataclassError

        return StrictDataclassError
    except ImportError:
        return ValueError


def anatomy_from_config(config_dict: dict[str, Any], *, source: str) -> Anatomy:
    from loratune.anatomy.extract import anatomy_from_model

    return anatomy_from_model(build_meta_model(config_dict), source=source)
