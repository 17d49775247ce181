"""PEFT: the ``LoraConfig`` / ``AdaLoraConfig`` keyword arguments as JSON, and a Python snippet.

Field names: peft ``src/peft/tuners/lora/config.py`` (LoraConfig) and
``src/peft/tuners/adalora/config.py`` (AdaLoraConfig), peft 0.17–0.21. The kwargs are the
recommendation's adapter written back by ``AdapterSpec.peft_kwargs`` plus the PEFT keys it does not
model, passed through (``bias``, ``task_type``, ``fan_in_fan_out``, AdaLoRA's schedule).
"""

from __future__ import annotations

import json
from typing import Any

from loratune.export.common import ExportInput, check_keys, read

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
# Recommendation order, for a file that reads like PEFT's docs (rank first).
_ORDER = ("r", "init_r", "target_r", "lora_alpha", "lora_dropout", "target_modules")

# AdaLoRA prunes ranks only in update_and_allocate, which PEFT says to call "in every training step
# after loss.backward() and before zero_grad()" (peft/tuners/adalora/model.py); transformers' Trainer
# never calls it, so a plain Trainer run keeps init_r everywhere. TrainerCallback.on_optimizer_step
# runs after optimizer.step() and before zero_grad() (transformers/trainer_callback.py).
ADALORA_STEP = [
    "# AdaLoRA: call model.base_model.update_and_allocate(step) after every optimizer.step(), before",
    "# optimizer.zero_grad(); transformers' Trainer does not, and without it no rank is ever pruned.",
    "# Own loop: loss.backward(); optimizer.step(); model.base_model.update_and_allocate(step); optimizer.zero_grad()",
    "# With a Trainer: Trainer(..., callbacks=[AdaLoraStep()])",
    "from transformers import TrainerCallback",
    "",
    "",
    "class AdaLoraStep(TrainerCallback):",
    "    def on_optimizer_step(self, args, state, control, model=None, **kwargs):",
    "        model.base_model.update_and_allocate(state.global_step)",
]


def _kwargs(x: ExportInput) -> tuple[str, dict[str, Any]]:
    adalora = x.spec.method == "adalora"
    kw = x.spec.peft_kwargs() | x.extra
    kw = {k: kw[k] for k in _ORDER if k in kw} | kw
    check_keys(kw, ADALORA_KEYS if adalora else LORA_KEYS, "PEFT")
    return ("AdaLoraConfig" if adalora else "LoraConfig"), kw


def peft_kwargs(rec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(class name, keyword arguments) — LoraConfig or AdaLoraConfig."""
    return _kwargs(read(rec, ""))


def export_peft_json(rec: dict[str, Any], model_name: str) -> str:
    """``LoraConfig(**json.load(f))`` (``AdaLoraConfig`` when it holds init_r) rebuilds the config.
    JSON has no comments: for AdaLoRA the training-loop step it needs is in the peft-python export."""
    _, kw = _kwargs(read(rec, model_name))
    return json.dumps(kw, indent=2) + "\n"


def export_peft_python(rec: dict[str, Any], model_name: str) -> str:
    x = read(rec, model_name)
    cls, kw = _kwargs(x)
    training = x.training
    auto = _AUTO_CLASS.get(str(kw.get("task_type")), "AutoModel")
    args = "".join(f"    {k}={v!r},\n" for k, v in kw.items())
    lines = [
        f"# LoRA config recommended by loratune for {x.model.catalog_name or x.model.ref}",
        f"# {x.model.comment()}",
        f"from peft import {cls}, get_peft_model",
        f"from transformers import {auto}",
        "",
        f"model = {auto}.from_pretrained({x.model.ref!r})",
        f"config = {cls}(\n{args})",
        "model = get_peft_model(model, config)",
        "model.print_trainable_parameters()",
    ]
    if cls == "AdaLoraConfig":
        lines += ["", *ADALORA_STEP, ""]
    if training:
        lines += ["", "# Training values (transformers.TrainingArguments names):"]
        for key in ("learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs"):
            if training.get(key) is not None:
                lines.append(f"#   {key}={training[key]!r}")
        if training.get("max_steps"):
            lines.append(f"#   total optimizer steps ≈ {training['max_steps']}")
        if training.get("gradient_checkpointing"):
            lines.append("#   gradient_checkpointing=True")
        if training.get("dtype") == "bf16":
            lines.append("#   bf16=True (the estimate assumed a bf16 base)")
        if x.four_bit:
            lines.append("#   load the base in 4 bit: BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type='nf4')")
    return "\n".join(lines) + "\n"
