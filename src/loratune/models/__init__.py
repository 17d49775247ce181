"""Model sources: catalog names, local directories and GGUF files → skeletons or loaded models."""

from loratune.models.catalog import EMBEDDED_MODEL, catalog_names
from loratune.models.skeleton import build_meta_model, load_anatomy, read_config
from loratune.models.source import ModelSource, embedded_gguf, resolve_source

__all__ = [
    "EMBEDDED_MODEL",
    "ModelSource",
    "build_meta_model",
    "catalog_names",
    "embedded_gguf",
    "load_anatomy",
    "read_config",
    "resolve_source",
]
