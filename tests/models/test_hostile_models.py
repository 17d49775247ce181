"""Model folders a user (or an attacker) can hand us: custom code, impossible sizes, wrong types, corrupt
weights — each refused with one line and exit 2 through the real CLI entry point, nothing built first."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from loratune.cli.app import run
from loratune.errors import ModelSourceError
from loratune.models import load_anatomy, resolve_source
from loratune.models.weights import check_safetensors

LLAMA = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 128,
}


def _folder(tmp_path: Path, **change: object) -> Path:
    d = tmp_path / "model"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps({**LLAMA, **change}))
    return d


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = run(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def test_a_plain_config_builds(tmp_path: Path) -> None:
    assert load_anatomy(resolve_source(str(_folder(tmp_path)))).num_layers == 2


def test_auto_map_is_refused_everywhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _folder(tmp_path, auto_map={"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"})
    for cmd in ("inspect", "budget"):
        rc, out = _cli(capsys, cmd, str(d))
        assert rc == 2 and "auto_map" in out and "Traceback" not in out
        assert len(out.strip().splitlines()) == 1


def test_training_load_refuses_auto_map_before_reading_weights(tmp_path: Path) -> None:
    from loratune.models.weights import weights_dir

    d = _folder(tmp_path, auto_map={"AutoModel": "x.Y"})
    with pytest.raises(ModelSourceError, match="auto_map"):
        weights_dir(resolve_source(str(d)))


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("num_hidden_layers", -2, "positive integer"),
        ("num_hidden_layers", "two", "positive integer"),
        ("hidden_size", 64.5, "positive integer"),
        ("num_hidden_layers", 100_000, "beyond any real model"),
        ("vocab_size", True, "positive integer"),
    ],
)
def test_impossible_sizes_are_refused_before_building(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: object, words: str
) -> None:
    rc, out = _cli(capsys, "inspect", str(_folder(tmp_path, **{field: value})))
    assert rc == 2 and words in out and field in out and "Traceback" not in out


def test_unknown_model_type_is_one_short_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = _cli(capsys, "inspect", str(_folder(tmp_path, model_type="no-such-arch")))
    assert rc == 2 and "no-such-arch" in out and len(out) < 300


def test_wrong_field_type_deep_in_the_model_names_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out = _cli(capsys, "inspect", str(_folder(tmp_path, rope_scaling="yes")))
    assert rc == 2 and "Traceback" not in out and "config" in out


@pytest.mark.parametrize(
    "content",
    [b"", b"\x01\x02", struct.pack("<Q", 10**9) + b"{}", struct.pack("<Q", 2) + b"[]", struct.pack("<Q", 4) + b"{{{{"],
)
def test_corrupt_safetensors_are_refused(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "model.safetensors"
    p.write_bytes(content)
    with pytest.raises(ModelSourceError, match="not a valid safetensors"):
        check_safetensors(p)


def test_truncated_safetensors_is_refused_and_a_whole_one_passes(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    p = tmp_path / "model.safetensors"
    save_file({"w": torch.ones(64, 64)}, str(p))
    check_safetensors(p)  # whole: passes
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(ModelSourceError, match="truncated"):
        check_safetensors(p)


def test_deeply_nested_config_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "deep"
    d.mkdir()
    (d / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    rc, out = _cli(capsys, "inspect", str(d))
    assert rc == 2 and "nested too deeply" in out


def test_non_utf8_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "bin"
    d.mkdir()
    (d / "config.json").write_bytes(b"\xff\xfe{}")
    rc, out = _cli(capsys, "inspect", str(d))
    assert rc == 2 and "UTF-8" in out
