"""Every number is checked once, at its type: AdapterSpec, parse_size, the counts, the PEFT-kwargs reader,
and a rank against the model's own dimensions."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from loratune.anatomy.targets import TargetSpec, resolve
from loratune.budget import AdapterSpec, count_params
from loratune.budget.adapter_file import read_adapter_file
from loratune.budget.memory import MemorySettings
from loratune.budget.params import check_rank_fits
from loratune.budget.spec import MAX_RANK, PEFT_KEYS, check_peft_keys, peft_fields, unknown_peft_keys
from loratune.errors import ConfigError
from loratune.models import load_anatomy, resolve_source
from loratune.units import MAX_SIZE_BYTES, parse_int_list, parse_size

T = TargetSpec(("q_proj", "v_proj"))


@pytest.fixture(scope="module")
def gpt2():
    return load_anatomy(resolve_source("gpt2"))


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"r": 0}, "r must be a positive integer, got 0"),
        ({"r": -8}, "r must be a positive integer"),
        ({"r": 8.0}, "r must be a positive integer, got 8.0"),
        ({"r": True}, "r must be a positive integer"),
        ({"r": 10**23}, "beyond any model's layer width"),
        ({"alpha": math.nan}, "lora_alpha must be a finite number > 0, got nan"),
        ({"alpha": math.inf}, "lora_alpha must be a finite number > 0, got inf"),
        ({"alpha": -16}, "lora_alpha must be a finite number > 0, got -16"),
        ({"alpha": 0}, "lora_alpha must be a finite number > 0"),
        ({"alpha": "16"}, "lora_alpha must be a number"),
        ({"dropout": math.nan}, "lora_dropout must be a number in [0, 1), got nan"),
        ({"dropout": -0.1}, "lora_dropout must be a number in [0, 1)"),
        ({"dropout": 1.0}, "lora_dropout must be a number in [0, 1)"),
        ({"rank_pattern": {"q_proj": 0}}, "rank_pattern 'q_proj' must be a positive integer"),
        ({"rank_pattern": {"q_proj": -4}}, "rank_pattern 'q_proj' must be a positive integer"),
        ({"rank_pattern": {"(": 4}}, "not a valid regex"),
        ({"alpha_pattern": {"q_proj": -4.0}}, "alpha_pattern 'q_proj' must be a finite number > 0"),
        ({"alpha_pattern": {"q_proj": math.nan}}, "alpha_pattern 'q_proj' must be a finite number > 0"),
        ({"alpha_pattern": {"q_proj": math.inf}}, "alpha_pattern 'q_proj' must be a finite number > 0"),
        ({"method": "adalora", "target_r": 0}, "target_r must be a positive integer, got 0"),
        ({"method": "adalora", "target_r": -1}, "target_r must be a positive integer"),
        ({"method": "adalora", "r": 8, "target_r": 12}, "exceeds init_r"),
        ({"target_r": 4}, "applies to AdaLoRA only"),
        ({"method": "vera"}, "unknown method"),
        ({"use_rslora": "yes"}, "use_rslora must be true or false"),
    ],
)
def test_adapter_spec_refuses_bad_values_naming_field_and_value(kw: dict, says: str) -> None:
    with pytest.raises(ConfigError) as e:
        AdapterSpec(T, **kw)
    assert says in e.value.one_line()
    assert e.value.hint  # every refusal says how to fix it


def test_adapter_spec_accepts_the_ordinary() -> None:
    AdapterSpec(T, r=8, alpha=16, dropout=0.0, rank_pattern={"q_proj": 16}, alpha_pattern={"q_proj": 32.5})
    AdapterSpec(T, r=12, alpha=24, method="adalora", target_r=8)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("8GB", 8 * 1024**3), ("24GiB", 24 * 1024**3), ("512MB", 512 * 1024**2), ("8e9B", 8 * 10**9), ("1.5e3", 1500)],
)
def test_parse_size_reads_sizes(text: str, expected: int) -> None:
    assert parse_size(text, "--vram") == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("1e400GB", "more than 1 PiB"),
        ("2PiB", "unknown size unit"),
        ("2048TiB", "more than 1 PiB"),
        ("0GB", "must be positive"),
        ("0.1B", "must be positive"),
        ("-8GB", "cannot read --vram"),
        ("nanGB", "cannot read --vram"),
        ("infGB", "cannot read --vram"),
        ("8XB", "unknown size unit"),
        ("", "cannot read --vram"),
    ],
)
def test_parse_size_refuses_naming_the_flag(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_size(text, "--vram")
    assert says in e.value.one_line() and "--vram" in e.value.one_line()


def test_parse_size_limit_is_one_pebibyte() -> None:
    assert parse_size("1024TiB") == MAX_SIZE_BYTES


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"batch_size": 0}, "batch size (--batch-size) must be at least 1"),
        ({"batch_size": 10**30}, "absurdly large"),
        ({"seq_len": -512}, "sequence length (--seq-len) must be at least 1"),
        ({"seq_len": 10**30}, "absurdly large"),
    ],
)
def test_memory_settings_bound_counts(kw: dict, says: str) -> None:
    with pytest.raises(ConfigError, match=None) as e:
        MemorySettings(**kw)
    assert says in e.value.message


def test_huge_layer_range_is_refused_without_expanding_it() -> None:
    with pytest.raises(ConfigError, match="past the model's last layer"):
        parse_int_list("0-99999999999999999999", what="layer range", upper=12)


def test_rank_beyond_every_module_names_the_largest_sensible_r(gpt2) -> None:
    # gpt2 attention: c_attn 768 → 2304 and attn.c_proj 768 → 768, so min(in, out) is at most 768.
    with pytest.raises(ConfigError, match=r"largest sensible r is 768"):
        count_params(gpt2, AdapterSpec(TargetSpec(("c_attn",)), r=769))
    assert count_params(gpt2, AdapterSpec(TargetSpec(("c_attn",)), r=768)).trainable_params == 12 * 768 * 3072
    with pytest.raises(ConfigError, match="rank_pattern rank = 1,000"):
        count_params(gpt2, AdapterSpec(TargetSpec(("c_attn", "c_fc")), r=8, rank_pattern={"c_fc": 1000}))
    with pytest.raises(ConfigError, match=r"r = 99,999 is above min\(in, out\)"):
        check_rank_fits(99_999, resolve(gpt2, TargetSpec(("c_attn",))).modules)
    assert MAX_RANK >= 1 << 16


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"r": "eight"}, "r must be a whole number, got 'eight'"),
        ({"r": 8.5}, "r must be a whole number"),
        ({"lora_alpha": "16"}, "lora_alpha must be a number"),
        ({"lora_dropout": [0.1]}, "lora_dropout must be a number"),
        ({"use_rslora": "true"}, "use_rslora must be true or false"),
        ({"rank_pattern": [1]}, "rank_pattern must be an object"),
        ({"rank_pattern": {"q_proj": "x"}}, "rank_pattern 'q_proj' must be a whole number"),
        ({"target_modules": [1, 2]}, "target_modules must be a list of module names"),
        ({"target_modules": ["q"], "layers_to_transform": "0-3"}, "layers_to_transform must be a list"),
        ({"init_r": 12, "target_r": "4"}, "target_r must be a whole number"),
    ],
)
def test_peft_fields_refuses_wrong_types_naming_the_key(kw: dict, says: str) -> None:
    with pytest.raises(ConfigError) as e:
        peft_fields(kw)
    assert says in e.value.message


def test_peft_fields_reads_integral_floats() -> None:
    assert peft_fields({"r": 8.0, "lora_alpha": 16})[0] == {"method": "lora", "r": 8, "alpha": 16.0}


def test_peft_keys_are_peft_own_fields() -> None:
    import peft

    fields = {f.name for cls in (peft.LoraConfig, peft.AdaLoraConfig) for f in dataclasses.fields(cls)}
    # An older/newer PEFT may add fields; every field loratune lists must still be real in 0.21.
    if peft.__version__.startswith("0.21"):
        assert fields == set(PEFT_KEYS)
    assert unknown_peft_keys({"r": 8, "bogus": 1, "method": "dora"}) == ["bogus"]
    with pytest.raises(ConfigError, match="unknown key 'lora_alhpa'") as e:
        check_peft_keys({"lora_alhpa": 16}, "x.json")
    assert "lora_alpha" in (e.value.hint or "")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{", "is not valid JSON (line 1"),
        (b"\xff\xfe{}", "is not UTF-8"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("[1, 2]", "holds a JSON list, not an object"),
        (json.dumps({"config": {"r": "eight"}}), "in 'config': r must be a whole number"),
        (json.dumps({"config": {"r": 8, "bogus": 1}}), "unknown key 'bogus'"),
        (json.dumps({"confg": {"r": 8}}), "unknown key 'confg'"),
        (json.dumps({"config": {"r": 8}, "extra": 1}), "unknown key 'extra'"),
        (json.dumps({"config": [1]}), "'config' must be an object"),
        ('{"config": {"r": 8, "lora_alpha": NaN}}', "lora_alpha must be a finite number > 0, got nan"),
        (json.dumps({"config": {"r": -4}}), "r must be a positive integer, got -4"),
        (json.dumps({"r": 8, "lora_dropout": 2}), "lora_dropout must be a number in [0, 1)"),
    ],
)
def test_adapter_file_errors_name_the_file_and_place(tmp_path, content: str | bytes, says: str) -> None:
    f = tmp_path / "cfg.json"
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError) as e:
        read_adapter_file(f)
    assert says in e.value.message and str(f) in e.value.message


def test_adapter_file_directory_and_missing(tmp_path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        read_adapter_file(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        read_adapter_file(tmp_path / "nope.json")


def test_adapter_file_reads_recommend_json_and_adapter_config(tmp_path) -> None:
    rec = tmp_path / "rec.json"
    rec.write_text(json.dumps({"model": "gpt2", "config": {"r": 4, "lora_alpha": 8, "target_modules": ["c_attn"]}}))
    a = read_adapter_file(rec)
    assert (a.values["r"], a.values["alpha"], a.values["targets"].target_modules) == (4, 8.0, ("c_attn",))
    peft_cfg = tmp_path / "adapter_config.json"
    peft_cfg.write_text(json.dumps({"peft_type": "LORA", "r": 4, "target_modules": ["c_attn"], "bias": "none"}))
    b = read_adapter_file(peft_cfg)
    assert b.values["r"] == 4 and b.extra == {"peft_type": "LORA", "bias": "none"}
