"""Unsloth: a ``FastLanguageModel.get_peft_model(...)`` call. Parameter names from unsloth 2026.10.9
``unsloth/models/llama.py`` (FastLlamaModel.get_peft_model: r, target_modules, lora_alpha, lora_dropout,
bias, layers_to_transform, layers_pattern, use_gradient_checkpointing, random_state, max_seq_length,
use_rslora, modules_to_save, init_lora_weights, loftq_config, temporary_location, ..., ``**kwargs``;
the kwargs go to ``peft.LoraConfig(**arguments)`` unchanged, which is how ``use_dora``,
``exclude_modules`` and ``lora_bias`` reach PEFT — its check_parameters note says so for use_dora) and
``unsloth/models/loader.py`` (FastLanguageModel.from_pretrained: model_name, max_seq_length, dtype,
load_in_4bit — which defaults to True, so it is always written)."""

from __future__ import annotations

from typing import Any

from loratune.export.common import ExportInput, cannot_express, no_adalora, read

# FastLlamaModel.get_peft_model's named parameters, plus the LoraConfig keys we pass through **kwargs.
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
UNSLOTH_PASSTHROUGH_KEYS = frozenset({"use_dora", "exclude_modules", "lora_bias"})
UNSLOTH_LOAD_KEYS = frozenset({"model_name", "max_seq_length", "dtype", "load_in_4bit"})


def _kwargs(x: ExportInput) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    no_adalora(x, "Unsloth")
    spec, t, training = x.spec, x.spec.targets, x.training
    load = {"max_seq_length": training.get("seq_len", 2048), "load_in_4bit": x.four_bit}
    peft: dict[str, Any] = {
        "r": spec.r,
        "target_modules": x.targets,
        "lora_alpha": x.alpha,
        "lora_dropout": spec.dropout,
        "bias": x.extra.get("bias", "none"),
    }
    if t.layers_to_transform is not None:
        peft["layers_to_transform"] = list(t.layers_to_transform)
        if t.layers_pattern:
            peft["layers_pattern"] = list(t.layers_pattern)
    # "unsloth" is Unsloth's own offloaded checkpointing; False keeps the recommendation's choice.
    peft["use_gradient_checkpointing"] = "unsloth" if training.get("gradient_checkpointing") else False
    peft["random_state"] = 3407
    peft["use_rslora"] = spec.use_rslora
    peft["loftq_config"] = None
    if t.modules_to_save:
        peft["modules_to_save"] = list(t.modules_to_save)
    if spec.method == "dora":
        peft["use_dora"] = True
    if t.exclude_modules:
        peft["exclude_modules"] = list(t.exclude_modules)
    if spec.lora_bias:
        peft["lora_bias"] = True
    notes = cannot_express(x, "Unsloth", layers=False, exclude=False, patterns=True, bias=False)
    return load, peft, notes


def unsloth_kwargs(rec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(from_pretrained kwargs, get_peft_model kwargs, notes on what Unsloth cannot express)."""
    return _kwargs(read(rec, ""))


def export_unsloth(rec: dict[str, Any], model_name: str) -> str:
    x = read(rec, model_name)
    load, peft, notes = _kwargs(x)
    training = x.training
    load_args = "".join(f"    {k}={v!r},\n" for k, v in load.items())
    peft_args = "".join(f"    {k}={v!r},\n" for k, v in peft.items())
    lines = [f"# Unsloth LoRA setup recommended by loratune for {x.model.catalog_name or x.model.ref}"]
    lines += [f"# {x.model.comment()}"]
    lines += [f"# {n}" for n in notes]
    if "use_dora" in peft:
        lines.append("# use_dora goes through get_peft_model's **kwargs to peft.LoraConfig")
    lines += [
        "from unsloth import FastLanguageModel",
        "",
        f"model, tokenizer = FastLanguageModel.from_pretrained(\n    model_name={x.model.ref!r},\n{load_args})",
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
