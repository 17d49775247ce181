"""Resolving MODEL: catalog names, directories, GGUF files — and the errors for everything else."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from loratune.errors import ModelSourceError, UnsafeWeightsError
from loratune.models import embedded_gguf, load_anatomy, resolve_source
from loratune.models.weights import check_weight_files


def test_catalog_name_resolves_without_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from loratune.models import resolve_source, load_anatomy;"
        "a = load_anatomy(resolve_source('llama-2-70b')); assert a.num_layers == 80;"
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_unknown_name_lists_catalog_and_how_to_pass_a_path() -> None:
    with pytest.raises(ModelSourceError) as e:
        resolve_source("gpt-5")
    assert "gpt2" in e.value.one_line() and "config.json" in e.value.one_line()


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match="no such file"):
        resolve_source(str(tmp_path / "nope" / "model"))


def test_directory_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match="config.json"):
        resolve_source(str(tmp_path))


def test_corrupt_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelSourceError, match="not valid JSON \\(line 1, column 2"):
        load_anatomy(resolve_source(str(tmp_path)))


def test_unknown_model_type(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "my-secret-arch"}))
    with pytest.raises(ModelSourceError, match="my-secret-arch"):
        load_anatomy(resolve_source(str(tmp_path)))


def test_local_directory_config_gives_same_anatomy_as_catalog(tmp_path: Path) -> None:
    from transformers import AutoConfig

    from loratune.models import read_config

    cfg = read_config(resolve_source("gpt2"))
    AutoConfig.for_model(cfg.pop("model_type"), **cfg).save_pretrained(tmp_path)
    local = load_anatomy(resolve_source(str(tmp_path)))
    catalog = load_anatomy(resolve_source("gpt2"))
    assert local.modules == catalog.modules
    assert local.total_params == catalog.total_params


def test_corrupt_gguf(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    with pytest.raises(ModelSourceError, match="GGUF"):
        load_anatomy(resolve_source(str(bad)))


def test_embedded_gguf_matches_catalog_skeleton() -> None:
    """The real SmolLM2 GGUF, read from its metadata, has the catalog's anatomy."""
    gguf = embedded_gguf()
    from_file = load_anatomy(resolve_source(str(gguf)))
    catalog = load_anatomy(resolve_source("smollm2-135m"))
    assert [(m.name, m.in_features, m.out_features, m.role) for m in from_file.modules] == [
        (m.name, m.in_features, m.out_features, m.role) for m in catalog.modules
    ]
    assert from_file.total_params == catalog.total_params


def test_pickle_weights_need_the_flag(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(UnsafeWeightsError, match="pickle"):
        check_weight_files(tmp_path, allow_pickle=False)
    check_weight_files(tmp_path, allow_pickle=True)  # the explicit flag lets it through
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", 2) + b"{}")  # a valid, empty file
    check_weight_files(tmp_path, allow_pickle=False)  # safetensors present: pickle files are ignored
