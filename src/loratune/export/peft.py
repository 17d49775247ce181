"""PEFT: the ``LoraConfig`` / ``AdaLoraConfig`` keyword arguments as JSON, and a Python snippet.

Field names: peft ``src/peft/tuners/lora/config.py`` (LoraConfig) and
``src/peft/tuners/adalora/config.py`` (AdaLoraConfig), peft 0.17–0.21.
"""

from __future__ import annotations

import json
from typing import Any

from loratune.export.common import check_keys, method_of, parts

LORA_KEYS = frozenset(
    {
        "r",
        "lora_alpha",
        "lora_dropout",
        "target_modules",
        "exclude_modules",
        "use_dora",
        "use_rslora",
        "lora_bias",
        "bias",
        "layers_to_transform",
        "layers_pattern",
        "modules_to_save",
        "rank_pattern",
        "alpha_pattern",
        "task_type",
        "init_lora_weights",
        "fan_in_fan_out",
    }
)
ADALORA_KEYS = (LORA_KEYS - {"r", "use_dora"}) | frozenset(
    {"init_r", "target_r", "tinit", "tfinal", "deltaT", "total_step", "orth_reg_weight", "beta1", "beta2"}
)

_AUTO_CLASS = {"CAUSAL_LM": "AutoModelForCausalLM", "SEQ_2_SEQ_LM": "AutoModelForSeq2SeqLM"}


def peft_kwargs(rec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(class name, keyword arguments) — LoraConfig or AdaLoraConfig."""
    config, _ = parts(rec)
    adalora = method_of(config) == "adalora"
    kw = {k: v for k, v in config.items() if not (adalora and k in ("r", "use_dora"))}
    check_keys(kw, ADALORA_KEYS if adalora else LORA_KEYS, "PEFT")
    return ("AdaLoraConfig" if adalora else "LoraConfig"), kw


def export_peft_json(rec: dict[str, Any], model_name: str) -> str:
    """``LoraConfig(**json.load(f))`` (``AdaLoraConfig`` when it holds init_r) rebuilds the config."""
    _, kw = peft_kwargs(rec)
    return json.dumps(kw, indent=2) + "\n"


def export_peft_python(rec: dict[str, Any], model_name: str) -> str:
    cls, kw = peft_kwargs(rec)
    _, training = parts(rec)
    auto = _AUTO_CLASS.get(str(kw.get("task_type")), "AutoModel")
    args = "".join(f"    {k}={v!r},\n" for k, v in kw.items())
    lines = [
        f"# LoRA config recommended by loratune for {model_name}",
        f"from peft import {cls}, get_peft_model",
        f"from transformers import {auto}",
        "",
        f"model = {auto}.from_pretrained({model_name!r})  # a Hub id or a local directory",
        f"config = {cls}(\n{args})",
        "model = get_peft_model(model, config)",
        "model.print_trainable_parameters()",
    ]
    if training:
        lines += ["", "# Training values (transformers.TrainingArguments names):"]
        for key in ("learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs"):
            if training.get(key) is not None:
                lines.append(f"#   {key}={training[key]!r}")
        if training.get("max_steps"):
            lines.append(f"#   total optimizer steps ≈ {training['max_steps']}")
        if training.get("gradient_checkpointing"):
            lines.append("#   gradient_checkpointing=True")
        if training.get("quantization") == "4bit":
            lines.append("#   load the base in 4 bit: BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type='nf4')")
    return "\n".join(lines) + "\n"
