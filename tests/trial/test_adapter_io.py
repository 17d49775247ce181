"""Saving and checking adapter folders: a crash never leaves a half-written adapter that looks good."""

from __future__ import annotations

import json
import struct

import pytest

from loratune.errors import ConfigError, ModelSourceError, UnsafeWeightsError
from loratune.trial.adapter_io import check_adapter_dir, save_adapter

LORA = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj"]}


class _Saver:
    """Writes PEFT's two files, or dies half-way (after the config, before the weights)."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.fail = fail

    def save_pretrained(self, path: str, safe_serialization: bool = True) -> None:
        from pathlib import Path

        (Path(path) / "adapter_config.json").write_text(json.dumps(LORA))
        if self.fail is not None:
            raise self.fail
        (Path(path) / "adapter_model.safetensors").write_bytes(struct.pack("<Q", 2) + b"{}")


@pytest.mark.parametrize("fail", [KeyboardInterrupt(), OSError("disk full")])
def test_a_save_that_dies_half_way_leaves_nothing_and_keeps_the_old_adapter(tmp_path, fail):
    out = tmp_path / "adapter"
    save_adapter(_Saver(), out, {"status": "ok", "run": 1})
    with pytest.raises(type(fail)):
        save_adapter(_Saver(fail), out, {"status": "ok", "run": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]  # no temp folder left beside it
    assert json.loads((out / "metrics.json").read_text())["run"] == 1  # the complete old one, untouched
    check_adapter_dir(out)


def test_check_adapter_dir_refuses_each_broken_folder(tmp_path):
    d = tmp_path / "a"
    d.mkdir()
    with pytest.raises(ConfigError, match="no adapter_config.json"):
        check_adapter_dir(d)
    (d / "adapter_config.json").write_text(json.dumps(LORA))
    with pytest.raises(ConfigError, match="no weights"):
        check_adapter_dir(d)
    (d / "adapter_model.bin").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(UnsafeWeightsError, match="pickle"):
        check_adapter_dir(d)
    assert check_adapter_dir(d, allow_pickle=True)["r"] == 8
    (d / "adapter_model.safetensors").write_bytes(struct.pack("<Q", 50) + b"{}")
    with pytest.raises(ModelSourceError, match="not a valid safetensors"):
        check_adapter_dir(d)
    (d / "adapter_config.json").write_text(json.dumps({**LORA, "peft_type": "IA3"}))
    with pytest.raises(ConfigError, match="peft_type 'IA3'"):
        check_adapter_dir(d)
