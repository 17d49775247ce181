"""LLaMA-Factory YAML. Key names from LLaMA-Factory ``src/llamafactory/hparams/finetuning_args.py``
(stage, finetuning_type, LoraArguments: lora_rank, lora_alpha, lora_dropout, lora_target, use_dora,
use_rslora, additional_target), ``hparams/model_args.py`` (model_name_or_path, quantization_bit),
``hparams/data_args.py`` (cutoff_len) and transformers' TrainingArguments (do_train, learning_rate,
per_device_train_batch_size, gradient_accumulation_steps, num_train_epochs)."""

from __future__ import annotations

from typing import Any

from loratune.export.common import check_keys, comment_block, no_adalora, parts, targets_list, to_yaml

LLAMAFACTORY_KEYS = frozenset(
    {
        "model_name_or_path",
        "quantization_bit",
        "stage",
        "do_train",
        "finetuning_type",
        "lora_rank",
        "lora_alpha",
        "lora_dropout",
        "lora_target",
        "use_dora",
        "use_rslora",
        "additional_target",
        "cutoff_len",
        "learning_rate",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "num_train_epochs",
        "max_steps",
    }
)


def export_llamafactory(rec: dict[str, Any], model_name: str) -> str:
    config, training = parts(rec)
    no_adalora(config, "LLaMA-Factory")
    notes = [f"LLaMA-Factory config recommended by loratune for {model_name} (add dataset, template, output_dir)"]
    out: dict[str, Any] = {"model_name_or_path": model_name}
    if training.get("quantization") == "4bit":
        out["quantization_bit"] = 4
    out.update({"stage": "sft", "do_train": True, "finetuning_type": "lora"})
    out["lora_rank"] = config["r"]
    out["lora_alpha"] = config["lora_alpha"]
    out["lora_dropout"] = config["lora_dropout"]
    targets = targets_list(config)
    # lora_target is a comma-separated string; "all" means every linear layer.
    out["lora_target"] = "all" if targets == "all-linear" else ",".join(targets)
    out["use_dora"] = bool(config.get("use_dora"))
    out["use_rslora"] = bool(config.get("use_rslora"))
    if config.get("modules_to_save"):
        out["additional_target"] = ",".join(config["modules_to_save"])
    if config.get("layers_to_transform"):
        notes.append(
            f"CANNOT EXPRESS layers_to_transform={config['layers_to_transform']}: LoRA arguments have no layer list"
        )
    if training.get("seq_len"):
        out["cutoff_len"] = training["seq_len"]
    for key in ("learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs"):
        if training.get(key) is not None:
            out[key] = training[key]
    if training.get("gradient_checkpointing") is False:
        notes.append("gradient checkpointing is on by default in LLaMA-Factory; loratune's estimate assumed it off")
    check_keys(out, LLAMAFACTORY_KEYS, "LLaMA-Factory")
    return comment_block(notes) + to_yaml(out)
