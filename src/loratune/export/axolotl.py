"""Axolotl YAML. Key names and types from axolotl 0.19.0 ``axolotl/utils/schemas/peft.py`` (LoraConfig:
adapter, load_in_4bit, lora_r, lora_alpha (int), lora_dropout, lora_target_modules, lora_target_linear,
lora_fan_in_fan_out, lora_modules_to_save, lora_rank_pattern, lora_alpha_pattern,
peft_layers_to_transform, peft_layers_pattern, peft_use_dora, peft_use_rslora; ``adapter: qlora``
requires ``load_in_4bit``), ``schemas/training.py`` (HyperparametersConfig: micro_batch_size,
gradient_accumulation_steps, learning_rate, num_epochs) and ``schemas/config.py`` / ``schemas/model.py``
(base_model, sequence_len, gradient_checkpointing, max_steps, bf16, fp16). Axolotl has no exclude list and no
lora_bias."""

from __future__ import annotations

from typing import Any

from loratune.errors import ConfigError
from loratune.export.common import cannot_express, check_keys, comment_block, int_alpha, no_adalora, read, to_yaml

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
        "lora_rank_pattern",
        "lora_alpha_pattern",
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
        "bf16",
        "fp16",
    }
)


def export_axolotl(rec: dict[str, Any], model_name: str) -> str:
    x = read(rec, model_name)
    no_adalora(x, "Axolotl")
    spec, t, training = x.spec, x.spec.targets, x.training
    out: dict[str, Any] = {"base_model": x.model.ref, "adapter": "qlora" if x.four_bit else "lora"}
    if x.four_bit:
        out["load_in_4bit"] = True
    out["lora_r"] = spec.r
    out["lora_alpha"] = int_alpha(x, "Axolotl")
    out["lora_dropout"] = spec.dropout
    if x.targets == "all-linear":
        out["lora_target_linear"] = True
    else:
        # A string is a regex to PEFT; Axolotl passes lora_target_modules to LoraConfig unchanged.
        out["lora_target_modules"] = x.targets
    if x.extra.get("fan_in_fan_out"):
        out["lora_fan_in_fan_out"] = True
    if t.modules_to_save:
        out["lora_modules_to_save"] = list(t.modules_to_save)
    if spec.rank_pattern:
        out["lora_rank_pattern"] = dict(spec.rank_pattern)
    if spec.alpha_pattern:
        if any(v != int(v) for v in spec.alpha_pattern.values()):
            raise ConfigError("Axolotl takes integer alpha_pattern values", "use integer alphas, or export to peft")
        out["lora_alpha_pattern"] = {k: int(v) for k, v in spec.alpha_pattern.items()}
    if t.layers_to_transform is not None:
        out["peft_layers_to_transform"] = list(t.layers_to_transform)
        if t.layers_pattern:
            out["peft_layers_pattern"] = list(t.layers_pattern)
    out["peft_use_dora"] = spec.method == "dora"
    out["peft_use_rslora"] = spec.use_rslora
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
    if training.get("dtype") in ("bf16", "fp16"):
        out[training["dtype"]] = True  # the memory estimate assumed this compute dtype
    check_keys(out, AXOLOTL_KEYS, "Axolotl")
    notes = [
        f"Axolotl config recommended by loratune for {x.model.catalog_name or x.model.ref} "
        "(LoRA keys only; add datasets, output_dir)",
        x.model.comment(),
        *cannot_express(x, "Axolotl", layers=False, exclude=True, patterns=False, bias=True),
    ]
    return comment_block(notes) + to_yaml(out)
