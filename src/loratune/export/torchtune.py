"""torchtune recipe config (``lora_finetune_single_device``). Key names from torchtune 0.6.1
``torchtune/models/llama3/_component_builders.py`` (lora_llama3: lora_attn_modules, apply_lora_to_mlp,
apply_lora_to_output, lora_rank, lora_alpha, lora_dropout, use_dora, quantize_base) and the recipe
configs ``recipes/configs/llama3_1/8B_lora_single_device.yaml`` (batch_size, epochs,
gradient_accumulation_steps, optimizer.lr, enable_activation_checkpointing, dtype).

torchtune names attention projections q_proj, k_proj, v_proj, output_proj and applies LoRA to the
whole MLP or none of it; other architectures (GPT-2, BERT, T5, Falcon) cannot be expressed. A model
needs a ``lora_*`` builder of the released torchtune (0.6.1): those are listed in ``BUILDERS``; any
other model (Qwen3, SmolLM2, a local directory) is refused rather than given a builder that does not
exist.
"""

from __future__ import annotations

from typing import Any

from loratune.errors import ConfigError
from loratune.export.common import cannot_express, check_keys, comment_block, no_adalora, read, to_yaml

MODEL_KEYS = frozenset(
    {
        "_component_",
        "lora_attn_modules",
        "apply_lora_to_mlp",
        "apply_lora_to_output",
        "lora_rank",
        "lora_alpha",
        "lora_dropout",
        "use_dora",
        "quantize_base",
    }
)
TOP_KEYS = frozenset(
    {
        "model",
        "batch_size",
        "epochs",
        "gradient_accumulation_steps",
        "optimizer",
        "enable_activation_checkpointing",
        "dtype",
    }
)
OPTIMIZER_KEYS = frozenset({"_component_", "lr", "weight_decay"})

TORCHTUNE_VERSION = "0.6.1"
# Catalog name → torchtune model builder. Each exists in torchtune 0.6.1
# (torchtune/models/<family>/__init__.py ``__all__``); 0.6.1 has no Qwen3 (no torchtune.models.qwen3).
BUILDERS = {
    "llama-2-7b": "torchtune.models.llama2.lora_llama2_7b",
    "llama-2-13b": "torchtune.models.llama2.lora_llama2_13b",
    "llama-2-70b": "torchtune.models.llama2.lora_llama2_70b",
    "llama-3.1-8b": "torchtune.models.llama3_1.lora_llama3_1_8b",
    "mistral-7b": "torchtune.models.mistral.lora_mistral_7b",
    "qwen2.5-0.5b": "torchtune.models.qwen2_5.lora_qwen2_5_0_5b",
    "qwen2.5-7b": "torchtune.models.qwen2_5.lora_qwen2_5_7b_base",
    "phi-3-mini": "torchtune.models.phi3.lora_phi3_mini",
}
# HF leaf name → torchtune attention names ("qkv_proj": Phi-3's fused matrix, split by torchtune).
_ATTN = {
    "q_proj": ["q_proj"],
    "k_proj": ["k_proj"],
    "v_proj": ["v_proj"],
    "o_proj": ["output_proj"],
    "qkv_proj": ["q_proj", "k_proj", "v_proj"],
}
_MLP = ("gate_proj", "up_proj", "down_proj", "gate_up_proj")


def export_torchtune(rec: dict[str, Any], model_name: str) -> str:
    x = read(rec, model_name)
    no_adalora(x, "torchtune")
    component = BUILDERS.get(x.model.catalog_name or "")
    if component is None:
        raise ConfigError(
            f"torchtune {TORCHTUNE_VERSION} has no LoRA model builder for {x.model.catalog_name or x.model.ref}",
            f"torchtune export covers {', '.join(sorted(BUILDERS))}; export this model to peft, axolotl, "
            "llamafactory or unsloth",
        )
    targets = x.targets
    if targets == "all-linear":
        targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    elif isinstance(targets, str):
        raise ConfigError(
            f"torchtune cannot express the regex target {targets!r}", "recommend with a module list, or export to peft"
        )
    attn: list[str] = []
    mlp_hit: list[str] = []
    output = False
    for t in targets:
        leaf = t.rsplit(".", 1)[-1]
        if leaf in _ATTN:
            attn += [a for a in _ATTN[leaf] if a not in attn]
        elif leaf in _MLP:
            mlp_hit.append(leaf)
        elif leaf == "lm_head":
            output = True
        else:
            raise ConfigError(
                f"torchtune cannot express target {t!r}: it knows llama-style module names only "
                "(q_proj, k_proj, v_proj, output_proj, the MLP as a whole, the output head)",
                "export this model to peft, axolotl, llamafactory or unsloth instead",
            )
    notes = [
        f"torchtune {TORCHTUNE_VERSION} config keys recommended by loratune for {x.model.catalog_name} "
        "(merge into a LoRA recipe config)",
        x.model.comment(),
        f"`tune download {x.model.ref}` fetches the checkpoint the recipe's checkpointer and tokenizer read",
    ]
    if mlp_hit and len(set(mlp_hit)) < 3 and "gate_up_proj" not in mlp_hit:
        notes.append(f"CANNOT EXPRESS MLP subset {sorted(set(mlp_hit))}: torchtune adapts all three MLP projections")
    notes += cannot_express(x, "torchtune", layers=True, exclude=True, patterns=True, bias=True)
    training = x.training
    model: dict[str, Any] = {
        "_component_": component,
        "lora_attn_modules": attn,
        "apply_lora_to_mlp": bool(mlp_hit),
        "apply_lora_to_output": output,
        "lora_rank": x.spec.r,
        "lora_alpha": x.alpha,
        "lora_dropout": x.spec.dropout,
        "use_dora": x.spec.method == "dora",
    }
    if x.four_bit:
        model["quantize_base"] = True
    out: dict[str, Any] = {"model": model}
    if training.get("per_device_train_batch_size") is not None:
        out["batch_size"] = training["per_device_train_batch_size"]
    if training.get("gradient_accumulation_steps") is not None:
        out["gradient_accumulation_steps"] = training["gradient_accumulation_steps"]
    if training.get("num_train_epochs") is not None:
        out["epochs"] = training["num_train_epochs"]
    if training.get("learning_rate") is not None:
        out["optimizer"] = {"_component_": "torch.optim.AdamW", "lr": training["learning_rate"]}
    out["enable_activation_checkpointing"] = bool(training.get("gradient_checkpointing"))
    if training.get("dtype") in ("bf16", "fp32"):
        out["dtype"] = training["dtype"]
    check_keys(out, TOP_KEYS, "torchtune")
    check_keys(model, MODEL_KEYS, "torchtune model")
    if "optimizer" in out:
        check_keys(out["optimizer"], OPTIMIZER_KEYS, "torchtune optimizer")
    return comment_block(notes) + to_yaml(out)
