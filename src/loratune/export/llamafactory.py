"""LLaMA-Factory YAML. Key names from LLaMA-Factory 0.9.5 ``src/llamafactory/hparams/finetuning_args.py``
(FinetuningArguments: stage, finetuning_type; LoraArguments: lora_rank, lora_alpha (int), lora_dropout,
lora_target, use_dora, use_rslora, additional_target), ``hparams/model_args.py`` (model_name_or_path,
quantization_bit, upcast_layernorm, disable_gradient_checkpointing), ``hparams/data_args.py``
(cutoff_len) and transformers' TrainingArguments (do_train, bf16, fp16, learning_rate,
per_device_train_batch_size, gradient_accumulation_steps, num_train_epochs, max_steps).

``lora_target`` is split on commas (``FinetuningArguments.__post_init__``), so a regex cannot be given;
LoRA arguments have no layer list, no exclude list, no rank pattern and no lora_bias."""

from __future__ import annotations

from typing import Any

from loratune.errors import ConfigError
from loratune.export.common import cannot_express, check_keys, comment_block, int_alpha, no_adalora, read, to_yaml

LLAMAFACTORY_KEYS = frozenset(
    {
        "model_name_or_path",
        "quantization_bit",
        "upcast_layernorm",
        "disable_gradient_checkpointing",
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
        "bf16",
        "fp16",
        "learning_rate",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "num_train_epochs",
        "max_steps",
    }
)


def export_llamafactory(rec: dict[str, Any], model_name: str) -> str:
    x = read(rec, model_name)
    no_adalora(x, "LLaMA-Factory")
    spec, training = x.spec, x.training
    notes = [
        f"LLaMA-Factory config recommended by loratune for {x.model.catalog_name or x.model.ref} "
        "(add dataset, template, output_dir)",
        x.model.comment(),
    ]
    out: dict[str, Any] = {"model_name_or_path": x.model.ref}
    if x.four_bit:
        out["quantization_bit"] = 4
        # Layer-norm weights in fp32 over the 4-bit base (model_args.py: "upcast the layernorm weights in fp32").
        out["upcast_layernorm"] = True
    out.update({"stage": "sft", "do_train": True, "finetuning_type": "lora"})
    out["lora_rank"] = spec.r
    out["lora_alpha"] = int_alpha(x, "LLaMA-Factory")
    out["lora_dropout"] = spec.dropout
    targets = x.targets
    if isinstance(targets, str) and targets != "all-linear":
        raise ConfigError(
            f"LLaMA-Factory cannot take the regex target {targets!r}: lora_target is a comma-separated name list",
            "recommend with a module list, or export to peft",
        )
    # lora_target is a comma-separated string; "all" means every linear layer.
    out["lora_target"] = "all" if targets == "all-linear" else ",".join(targets)
    out["use_dora"] = spec.method == "dora"
    out["use_rslora"] = spec.use_rslora
    if spec.targets.modules_to_save:
        out["additional_target"] = ",".join(spec.targets.modules_to_save)
    notes += cannot_express(x, "LLaMA-Factory", layers=True, exclude=True, patterns=True, bias=True)
    if training.get("seq_len"):
        out["cutoff_len"] = training["seq_len"]
    # The memory estimate assumed this compute dtype; without a flag the Trainer runs fp32.
    if training.get("dtype") in ("bf16", "fp16"):
        out[training["dtype"]] = True
    for key in (
        "learning_rate",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "num_train_epochs",
    ):
        if training.get(key) is not None:
            out[key] = training[key]
    if training.get("gradient_checkpointing") is False:
        # LLaMA-Factory checkpoints by default; loratune's estimate assumed it off.
        out["disable_gradient_checkpointing"] = True
    check_keys(out, LLAMAFACTORY_KEYS, "LLaMA-Factory")
    return comment_block(notes) + to_yaml(out)
