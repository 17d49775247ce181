"""`loratune eval` on bad input, through the real entry point: bad numbers and bad adapters are one
line and exit 2 — before torch where no model is needed, at the PEFT load boundary where one is."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

LORA = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--batch-size", "0", "--batch-size must be at least 1, got 0"),
        ("--batch-size", "-3", "--batch-size must be at least 1, got -3"),
        ("--qa-limit", "-1", "--qa-limit must be at least 0, got -1"),
        ("--max-length", "0", "--max-length must be at least 2, got 0"),
        ("--val-fraction", "2", "validation fraction must be in (0, 1), got 2.0"),
        ("--seed", "99999999999999999999999", "--seed must be at most 4294967295"),
    ],
)
def test_a_bad_number_is_one_line_before_torch(refused_cheaply, flag, value, needle, qa_file, tmp_path):
    refused_cheaply(["eval", "smollm2-135m", "--data", str(qa_file), flag, value], needle, tmp_path)


def _adapter(root: Path, name: str, config: str | dict | None, weights: dict[str, bytes]) -> Path:
    d = root / name
    d.mkdir()
    if config is not None:
        (d / "adapter_config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    for file, data in weights.items():
        (d / file).write_bytes(data)
    return d


SAFE_EMPTY = struct.pack("<Q", 2) + b"{}"


@pytest.mark.parametrize(
    ("config", "weights", "needle"),
    [
        (LORA, {"adapter_model.bin": b"\x80\x04K\x01."}, "adapter_model.bin is a pickle file"),
        ({**LORA, "peft_type": "NOPE"}, {"adapter_model.safetensors": SAFE_EMPTY}, "peft_type 'NOPE'"),
        (LORA, {}, "holds adapter_config.json but no weights"),
        ("{", {"adapter_model.safetensors": SAFE_EMPTY}, "is not valid JSON"),
        ("[1]", {"adapter_model.safetensors": SAFE_EMPTY}, "is not a JSON object"),
        (None, {"adapter_model.safetensors": SAFE_EMPTY}, "is not a PEFT adapter (no adapter_config.json)"),
        (LORA, {"adapter_model.safetensors": struct.pack("<Q", 10**9) + b"{}"}, "is not a valid safetensors file"),
    ],
)
def test_a_bad_adapter_is_one_line_before_torch(refused_cheaply, config, weights, needle, qa_file, tmp_path):
    d = _adapter(tmp_path, "adapter", config, weights)
    args = ["eval", "smollm2-135m", "--data", str(qa_file), "--adapter", str(d)]
    refused_cheaply(args, needle, tmp_path)


def test_pickle_message_names_the_flag(cli, qa_file, tmp_path):
    d = _adapter(tmp_path, "adapter", LORA, {"adapter_model.bin": b"\x80\x04K\x01."})
    rc, _, err = cli("eval", "smollm2-135m", "--data", str(qa_file), "--adapter", str(d))
    assert rc == 2 and "--allow-pickle" in err and str(d / "adapter_model.bin") in err


@pytest.mark.parametrize(("name", "needle"), [("missing", "does not exist"), ("afile", "is a file, not an adapter")])
def test_a_missing_or_file_adapter_is_refused(refused_cheaply, name, needle, qa_file, tmp_path):
    (tmp_path / "afile").write_text("x\n")
    args = ["eval", "smollm2-135m", "--data", str(qa_file), "--adapter", str(tmp_path / name)]
    refused_cheaply(args, needle, tmp_path)


def _peft_adapter(out: Path, model, targets: list[str], r: int = 4) -> Path:
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets))
    peft_model.save_pretrained(str(out))
    return out


def _llama(tiny_config, hidden: int):
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    cfg = tiny_config(
        "llama", hidden_size=hidden, intermediate_size=2 * hidden, vocab_size=49152, tie_word_embeddings=True
    )
    return LlamaForCausalLM(cfg)


def test_an_adapter_whose_shapes_do_not_fit_is_one_line(tiny_config, cli, tiny_model_dir, qa_file, tmp_path):
    d = _peft_adapter(tmp_path / "wide", _llama(tiny_config, 48), ["q_proj", "v_proj"])  # the tiny model is 32 wide
    rc, _, err = cli("eval", str(tiny_model_dir), "--data", str(qa_file), "--adapter", str(d), "--dtype", "fp32")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1, err
    assert str(d) in lines[0] and "does not fit the model" in lines[0] and "size mismatch" in lines[0]


def test_an_adapter_whose_targets_the_model_lacks_is_one_line(tiny_config, cli, tiny_model_dir, qa_file, tmp_path):
    d = _peft_adapter(tmp_path / "other", _llama(tiny_config, 32), ["q_proj"])
    cfg = json.loads((d / "adapter_config.json").read_text())
    cfg["target_modules"] = ["c_attn"]  # GPT-2's name: no such module in a Llama
    (d / "adapter_config.json").write_text(json.dumps(cfg))
    rc, _, err = cli("eval", str(tiny_model_dir), "--data", str(qa_file), "--adapter", str(d), "--dtype", "fp32")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1, err
    assert str(d) in lines[0] and "does not fit the model" in lines[0] and "c_attn" in lines[0]


def test_a_malformed_data_file_is_one_line(refused_cheaply, qa_file, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{not json\n')
    refused_cheaply(["eval", "smollm2-135m", "--data", str(bad)], "line 2: invalid JSON", tmp_path)
