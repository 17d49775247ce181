"""Axolotl YAML. Key names from axolotl ``src/axolotl/utils/schemas/peft.py`` (LoraConfig: adapter,
load_in_4bit, lora_r, lora_fan_in_fan_out, lora_alpha, lora_dropout, lora_target_modules, lora_target_linear,
lora_modules_to_save, peft_layers_to_transform, peft_use_dora, peft_use_rslora),
``schemas/training.py`` (HyperparametersConfig: micro_batch_size, gradient_accumulation_steps,
learning_rate, num_epochs) and ``schemas/config.py`` / ``schemas/model.py`` (base_model, sequence_len,
gradient_checkpointing, max_steps)."""

from __future__ import annotations

from typing import Any

from loratune.export.common import check_keys, comment_block, no_adalora, parts, targets_list, to_yaml

AXOLOTL_KEYS = frozenset(
    {
        "base_model",
        "adapter",
        "load_in_4bit",
        "load_in_8bit",
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "lora_target_modules",
        "lora_target_linear",
        "lora_fan_in_fan_out",
        "lora_modules_to_save",
        "peft_layers_to_transform",
        "peft_layers_pattern",
        "peft_use_dora",
        "peft_use_rslora",
        "sequence_len",
        "micro_batch_size",
        "gradient_accumulation_steps",
        "num_epochs",
        "max_steps",
        "learning_rate",
        "gradient_checkpointing",
        "optimizer",
    }
)


def export_axolotl(rec: dict[str, Any], model_name: str) -> str:
    config, training = parts(rec)
    no_adalora(config, "Axolotl")
    four_bit = training.get("quantization") == "4bit"
    out: dict[str, Any] = {"base_model": model_name, "adapter": "qlora" if four_bit else "lora"}
    if four_bit:
        out["load_in_4bit"] = True
    out["lora_r"] = config["r"]
    out["lora_alpha"] = config["lora_alpha"]
    out["lora_dropout"] = config["lora_dropout"]
    targets = targets_list(config)
    if targets == "all-linear":
        out["lora_target_linear"] = True
    else:
        out["lora_target_modules"] = targets
    if config.get("fan_in_fan_out"):
        out["lora_fan_in_fan_out"] = True
    if config.get("modules_to_save"):
        out["lora_modules_to_save"] = list(config["modules_to_save"])
    if config.get("layers_to_transform"):
        out["peft_layers_to_transform"] = list(config["layers_to_transform"])
    out["peft_use_dora"] = bool(config.get("use_dora"))
    out["peft_use_rslora"] = bool(config.get("use_rslora"))
    for src, dst in (
        ("seq_len", "sequence_len"),
        ("per_device_train_batch_size", "micro_batch_size"),
        ("gradient_accumulation_steps", "gradient_accumulation_steps"),
        ("num_train_epochs", "num_epochs"),
        ("learning_rate", "learning_rate"),
        ("gradient_checkpointing", "gradient_checkpointing"),
    ):
        if training.get(src) is not None:
            out[dst] = training[src]
    check_keys(out, AXOLOTL_KEYS, "Axolotl")
    head = comment_block([f"Axolotl config recommended by loratune for {model_name} (LoRA keys only; add datasets)"])
    return head + to_yaml(out)
