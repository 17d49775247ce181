"""Unsloth: a ``FastLanguageModel.get_peft_model(...)`` call. Parameter names from unsloth
``unsloth/models/llama.py`` (FastLlamaModel.get_peft_model: r, target_modules, lora_alpha,
lora_dropout, bias, layers_to_transform, layers_pattern, use_gradient_checkpointing, random_state,
max_seq_length, use_rslora, modules_to_save, init_lora_weights, loftq_config, temporary_location)
and ``unsloth/models/loader.py`` (FastLanguageModel.from_pretrained: model_name, max_seq_length,
dtype, load_in_4bit). The signature has no ``use_dora``."""

from __future__ import annotations

from typing import Any

from loratune.export.common import no_adalora, parts, targets_list

UNSLOTH_PEFT_KEYS = frozenset(
    {
        "r",
        "target_modules",
        "lora_alpha",
        "lora_dropout",
        "bias",
        "layers_to_transform",
        "layers_pattern",
        "use_gradient_checkpointing",
        "random_state",
        "max_seq_length",
        "use_rslora",
        "modules_to_save",
        "init_lora_weights",
        "loftq_config",
        "temporary_location",
    }
)
UNSLOTH_LOAD_KEYS = frozenset({"model_name", "max_seq_length", "dtype", "load_in_4bit"})


def unsloth_kwargs(rec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(from_pretrained kwargs, get_peft_model kwargs, notes on what Unsloth cannot express)."""
    config, training = parts(rec)
    no_adalora(config, "Unsloth")
    notes: list[str] = []
    load = {"max_seq_length": training.get("seq_len", 2048), "load_in_4bit": training.get("quantization") == "4bit"}
    peft: dict[str, Any] = {
        "r": config["r"],
        "target_modules": targets_list(config),
        "lora_alpha": config["lora_alpha"],
        "lora_dropout": config["lora_dropout"],
        "bias": config.get("bias", "none"),
    }
    if config.get("layers_to_transform"):
        peft["layers_to_transform"] = list(config["layers_to_transform"])
    # "unsloth" is Unsloth's own offloaded checkpointing; False keeps the recommendation's choice.
    peft["use_gradient_checkpointing"] = "unsloth" if training.get("gradient_checkpointing") else False
    peft["random_state"] = 3407
    peft["use_rslora"] = bool(config.get("use_rslora"))
    peft["loftq_config"] = None
    if config.get("use_dora"):
        notes.append("CANNOT EXPRESS use_dora=True: get_peft_model has no DoRA parameter; this trains plain LoRA")
    if config.get("modules_to_save"):
        peft["modules_to_save"] = list(config["modules_to_save"])
    return load, peft, notes


def export_unsloth(rec: dict[str, Any], model_name: str) -> str:
    load, peft, notes = unsloth_kwargs(rec)
    _, training = parts(rec)
    load_args = "".join(f"    {k}={v!r},\n" for k, v in load.items())
    peft_args = "".join(f"    {k}={v!r},\n" for k, v in peft.items())
    lines = [f"# Unsloth LoRA setup recommended by loratune for {model_name}"]
    lines += [f"# {n}" for n in notes]
    lines += [
        "from unsloth import FastLanguageModel",
        "",
        f"model, tokenizer = FastLanguageModel.from_pretrained(\n    model_name={model_name!r},\n{load_args})",
        f"model = FastLanguageModel.get_peft_model(\n    model,\n{peft_args})",
    ]
    if training.get("learning_rate") is not None:
        lines += [
            "",
            "# Training (TrainingArguments / SFTConfig): "
            + ", ".join(
                f"{k}={training[k]!r}"
                for k in (
                    "learning_rate",
                    "per_device_train_batch_size",
                    "gradient_accumulation_steps",
                    "num_train_epochs",
                )
                if training.get(k) is not None
            ),
        ]
    return "\n".join(lines) + "\n"
