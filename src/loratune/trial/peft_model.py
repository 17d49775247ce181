"""The PEFT model a trial trains, built in one place (the trial, the memory benchmark and the
throughput bench all call :func:`build_peft_model`), and the activation-checkpointing switch."""

from __future__ import annotations

from typing import Any

from loratune.anatomy import Anatomy
from loratune.anatomy.targets import resolve
from loratune.budget import AdapterSpec
from loratune.errors import ConfigError


def enable_checkpointing(lm: Any) -> None:
    """Non-reentrant activation checkpointing: it needs no input-requires-grad hook on the embeddings."""
    if hasattr(lm, "activation_checkpointing_enable"):  # transformers 5 name; the old one warns
        lm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def build_peft_model(
    base: Any,
    anatomy: Anatomy,
    adapter: AdapterSpec,
    total_steps: int,
    extra: dict[str, Any] | None,
    *,
    task_type: str = "CAUSAL_LM",
) -> tuple[Any, list[str]]:
    """Wrap ``base`` with the adapter. LoRA weights stay fp32 over a bf16 base (PEFT's
    ``autocast_adapter_dtype``), so updates are not lost to bf16 rounding."""
    from peft import AdaLoraConfig, LoraConfig, get_peft_model

    res = resolve(anatomy, adapter.targets)
    kw = adapter.peft_kwargs(res.peft_target_modules)
    kw["task_type"] = task_type  # SEQ_CLS: PEFT adds the head (classifier / score) to modules_to_save
    if adapter.method == "adalora":
        # AdaLoRA needs its schedule up front; the one the advice recommends (budget/adalora_schedule.py).
        from loratune.budget.adalora_schedule import adalora_steps

        kw.update(adalora_steps(total_steps).peft_kwargs())
    kw.update(extra or {})
    try:
        config = AdaLoraConfig(**kw) if adapter.method == "adalora" else LoraConfig(**kw)
        return get_peft_model(base, config), [w.message for w in res.warnings]
    except (TypeError, ValueError) as e:
        raise ConfigError(f"PEFT refused the adapter config: {e}", "check the config keys and values") from None
