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
