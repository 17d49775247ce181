import pytest

from loratune.errors import ConfigError
from loratune.trial import TrainSettings
from loratune.trial.config_file import adapter_fields, training_fields

# What `loratune recommend smollm2-135m --json` writes (keys "config" and "training").
RECOMMEND = {
    "config": {
        "r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.05,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "gate_proj", "down_proj"],
        "use_dora": False,
        "use_rslora": False,
        "bias": "none",
        "task_type": "CAUSAL_LM",
    },
    "training": {
        "learning_rate": 0.0002,
        "effective_batch_size": 16,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 4,
        "num_train_epochs": 3,
        "steps_per_epoch": None,
        "max_steps": None,
        "seq_len": 512,
        "dtype": "bf16",
        "gradient_checkpointing": False,
        "quantization": "none",
        "optimizer": "adamw",
    },
}


def test_recommend_output_becomes_settings_and_adapter():
    settings = TrainSettings(**training_fields(RECOMMEND["training"]))
    assert (settings.batch_size, settings.grad_accum, settings.epochs, settings.max_steps) == (4, 4, 3, None)
    assert settings.max_length == 512 and settings.compute_dtype == "bf16" and settings.learning_rate == 2e-4
    spec, extra = adapter_fields(RECOMMEND["config"])
    assert spec["method"] == "lora" and spec["r"] == 8 and spec["alpha"] == 16
    assert spec["targets"].target_modules[-1] == "down_proj"
    assert extra == {}


def test_adalora_and_dora_are_recognised_and_extras_pass_through():
    spec, extra = adapter_fields(
        {"init_r": 12, "target_r": 4, "tinit": 5, "lora_alpha": 8, "target_modules": "all-linear"}
    )
    assert spec["method"] == "adalora" and spec["r"] == 12 and spec["target_r"] == 4
    assert extra == {"tinit": 5}
    assert adapter_fields({"r": 4, "use_dora": True})[0]["method"] == "dora"


def test_unsupported_training_values_are_refused_with_a_fix():
    with pytest.raises(ConfigError, match="quantization"):
        training_fields({"quantization": "nf4"})
    with pytest.raises(ConfigError, match="warmup_typo"):
        training_fields({"warmup_typo": 1})


def test_the_file_is_read_by_the_one_peft_reader():
    """adapter_fields is budget.spec.peft_fields minus the run-describing keys: a PEFT-saved
    adapter_config.json (every default written) gives the same adapter as the short form."""
    from peft import LoraConfig

    from loratune.budget.spec import AdapterSpec, peft_fields

    short = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"], "use_dora": True}
    saved = LoraConfig(**short).to_dict()
    spec, extra = adapter_fields(saved)
    assert spec == peft_fields(saved)[0]
    assert AdapterSpec(**spec) == AdapterSpec.from_peft_kwargs(short)
    assert not {"task_type", "peft_type", "bias", "use_dora", "r"} & set(extra)


def _write(tmp_path, text, name="cfg.json"):
    p = tmp_path / name
    p.write_text(text) if isinstance(text, str) else p.write_bytes(text)
    return p


def test_peft_keys_cover_every_lora_and_adalora_field():
    """The key list is data (no PEFT import before torch is needed): it must name every field of the
    PEFT this project runs, or a valid PEFT key would be refused as unknown."""
    import dataclasses

    from peft import AdaLoraConfig, LoraConfig

    from loratune.trial.config_file import PEFT_KEYS

    fields = {f.name for cls in (LoraConfig, AdaLoraConfig) for f in dataclasses.fields(cls)}
    assert fields - PEFT_KEYS == set()


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("{", ["is not valid JSON", "line 1"]),
        (b"\xff\xfe{}", ["is not UTF-8"]),
        ("[" * 100_000 + "]" * 100_000, ["nested too deeply"]),
        ("[1, 2]", ["holds a list, not an object"]),
        ('{"confg": {"r": 8}}', ["unknown key(s) 'confg'"]),
        ('{"config": {"r": 8, "bogus": 1}}', ["unknown key(s) in 'config': 'bogus'"]),
        ('{"config": [1]}', ["'config' is a list"]),
        ('{"config": {"r": "eight"}}', ["config.r must be an integer, got 'eight'"]),
        ('{"config": {"r": -4}}', ["config.r must be in [1, 65536], got -4"]),
        ('{"config": {"r": 8, "lora_alpha": NaN}}', ["config.lora_alpha = nan is not a finite number"]),
        ('{"config": {"lora_dropout": 1.0}}', ["config.lora_dropout must be in [0, 1)"]),
        ('{"config": {"use_dora": "yes"}}', ["config.use_dora must be true or false"]),
        ('{"config": {"target_modules": [1, 2]}}', ["config.target_modules must be a list of module names"]),
        ('{"config": {"layers_to_transform": ["a"]}}', ["config.layers_to_transform"]),
        ('{"config": {"rank_pattern": {"q": -1}}}', ["config.rank_pattern['q'] must be a positive integer"]),
        ('{"training": {"learning_rate": "fast"}}', ["'training': --lr (learning_rate) must be a number"]),
        ('{"training": {"learning_rate": Infinity}}', ["training.learning_rate = inf"]),
        ('{"training": {"per_device_train_batch_size": 0}}', ["'training': --batch-size (batch_size)"]),
        ('{"training": {"warmup_typo": 1}}', ["warmup_typo"]),
        ('{"config": {"peft_type": "IA3"}}', ["config.peft_type 'IA3'"]),
    ],
)
def test_a_malformed_config_file_is_one_error_naming_file_and_place(tmp_path, text, needles):
    from loratune.trial.config_file import read_config_file

    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        read_config_file(p)
    assert str(p) in e.value.message and e.value.hint
    for needle in needles:
        assert needle in e.value.message, e.value.message


def test_a_directory_or_missing_config_file_is_refused(tmp_path):
    from loratune.trial.config_file import read_config_file

    with pytest.raises(ConfigError, match="is a directory"):
        read_config_file(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path / "none.json")


def test_recommends_whole_output_is_a_valid_config_file(tmp_path):
    import json

    from loratune.trial.config_file import read_config_file

    full = {**RECOMMEND, "model": "gpt2", "explanations": [], "memory": {}, "warnings": [], "warning_kinds": []}
    assert read_config_file(_write(tmp_path, json.dumps(full)))["config"]["r"] == 8
