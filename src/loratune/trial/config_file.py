"""Read a trial config file — ``recommend``'s JSON: ``{"config": {PEFT kwargs}, "training": {...}}``.

``config`` uses PEFT's own names (``r``, ``lora_alpha``, ``target_modules``, ``use_dora``,
``init_r``/``target_r`` for AdaLoRA, ``layers_to_transform``…) so the same file can be handed to
``peft.LoraConfig(**config)``. Keys loratune does not model (``init_lora_weights``, AdaLoRA's
``tinit``…) are passed through to PEFT unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loratune.budget.spec import peft_fields
from loratune.errors import ConfigError

# PEFT keys that never reach the config (they describe the run, not the adapter).
_DROPPED = {"task_type", "peft_type", "base_model_name_or_path", "revision", "inference_mode", "bias"}
# recommend/Trainer spellings → TrainSettings fields.
TRAINING_ALIASES = {
    "steps": "max_steps",
    "max_steps": "max_steps",
    "epochs": "epochs",
    "num_train_epochs": "epochs",
    "learning_rate": "learning_rate",
    "lr": "learning_rate",
    "batch_size": "batch_size",
    "per_device_train_batch_size": "batch_size",
    "grad_accum": "grad_accum",
    "gradient_accumulation_steps": "grad_accum",
    "warmup_ratio": "warmup_ratio",
    "scheduler": "scheduler",
    "lr_scheduler_type": "scheduler",
    "weight_decay": "weight_decay",
    "max_grad_norm": "max_grad_norm",
    "max_length": "max_length",
    "max_seq_length": "max_length",
    "gradient_checkpointing": "grad_checkpointing",
    "grad_checkpointing": "grad_checkpointing",
    "seed": "seed",
    "compute_dtype": "compute_dtype",
    "eval_every": "eval_every",
    "seq_len": "max_length",
    "dtype": "compute_dtype",
}
# Keys recommend writes that describe, not set, the run (derived values) — read and ignored.
TRAINING_INFO = {"effective_batch_size", "steps_per_epoch"}
# Keys a trial can only honour with one value.
TRAINING_FIXED = {"optimizer": ("adamw", "adamw_torch", "adamw_torch_fused"), "quantization": ("none",)}


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist", "pass the JSON written by `loratune recommend --json`"
        ) from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})", "fix the file") from None
    if not isinstance(data, dict) or not isinstance(data.get("config", {}), dict):
        raise ConfigError(f"{path} has no 'config' object", 'expected {"config": {...PEFT kwargs}, "training": {...}}')
    return data


def adapter_fields(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split PEFT kwargs into AdapterSpec keyword values (only those the file names, so flags can go on
    top) and pass-through PEFT extras — by :func:`loratune.budget.spec.peft_fields`, the one reader of
    PEFT kwargs; the keys that describe the run, not the adapter (``_DROPPED``), are left out."""
    spec, extra = peft_fields(config)
    return spec, {k: v for k, v in extra.items() if k not in _DROPPED}


def training_fields(training: dict[str, Any]) -> dict[str, Any]:
    """``training`` section → TrainSettings keyword values (unknown keys are an error)."""
    out: dict[str, Any] = {}
    unknown = []
    for key, value in training.items():
        if value is None or key in TRAINING_INFO:
            continue
        if key in TRAINING_FIXED:
            if str(value).lower() not in TRAINING_FIXED[key]:
                raise ConfigError(
                    f"training {key}={value!r} is not supported by loratune trials",
                    f"use {key}={TRAINING_FIXED[key][0]!r} (trials run AdamW on an unquantized base)",
                )
        elif key in TRAINING_ALIASES:
            out[TRAINING_ALIASES[key]] = value
        else:
            unknown.append(key)
    if unknown:
        raise ConfigError(
            f"unknown key(s) in 'training': {', '.join(sorted(unknown))}",
            f"known: {', '.join(sorted(TRAINING_ALIASES))}",
        )
    return out
