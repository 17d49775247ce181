"""``recommend(anatomy, inputs)``: a complete LoRA config, every value with its rule and source,
both sides where seed and literature disagree, fitted to the user's VRAM."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from loratune.advise import explain as S
from loratune.advise import rules as R
from loratune.advise.adalora import AdaLoraSchedule, adalora_schedule, init_rank
from loratune.advise.advisor import Advisor, task_type
from loratune.advise.explain import Alternative, Explanation
from loratune.advise.fit import FitStep, Knobs, fit_to_vram
from loratune.advise.inputs import GOALS, METHOD_CHOICES, RULE_SETS, AdviceInputs
from loratune.advise.modules import (
    STRATEGIES,
    role_targets,
    seed_targets,
)
from loratune.anatomy.targets import TargetSpec, resolve
from loratune.anatomy.types import Anatomy, TargetWarning
from loratune.budget.memory import MemorySettings, estimate_memory
from loratune.budget.params import count_params
from loratune.budget.spec import AdapterSpec

__all__ = ["GOALS", "METHOD_CHOICES", "RULE_SETS", "AdviceInputs", "Recommendation", "recommend"]


@dataclass
class Recommendation:
    model: str
    rules: str
    method: str  # "lora" | "dora" | "adalora"
    task: str
    config: dict[str, Any]  # PEFT LoraConfig / AdaLoraConfig keyword arguments
    training: dict[str, Any]
    explanations: list[Explanation]
    trainable_params: int
    trainable_percent: float
    memory: dict[str, Any]
    fit_steps: list[FitStep] = field(default_factory=list)
    warnings: list[TargetWarning] = field(default_factory=list)

    def explanation(self, param: str) -> Explanation:
        for e in self.explanations:
            if e.param == param:
                return e
        raise KeyError(param)

    def with_measured_lr(self, lr: float, rule: str, source: str) -> Recommendation:
        """This recommendation with a measured learning rate (``recommend --probe``) in place of the rule's;
        the rule's value becomes the other side, shown next to it."""
        ruled = self.explanation("learning_rate")
        measured = Explanation(
            "learning_rate",
            lr,
            rule,
            source,
            {"rule_value": ruled.value},
            Alternative(ruled.value, ruled.rule, ruled.source),
            "loratune follows the measurement (--probe): it ran on this model and data.",
        )
        rows = [measured if e.param == "learning_rate" else e for e in self.explanations]
        return replace(self, training={**self.training, "learning_rate": lr}, explanations=rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "rules": self.rules,
            "method": self.method,
            "task": self.task,
            "config": self.config,
            "training": self.training,
            "explanations": [e.to_dict() for e in self.explanations],
            "trainable_params": self.trainable_params,
            "trainable_percent": round(self.trainable_percent, 4),
            "memory": self.memory,
            "fit_steps": [s.to_dict() for s in self.fit_steps],
            # Strings, as before; ``warning_kinds`` (same order) is what code should test.
            "warnings": [w.message for w in self.warnings],
            "warning_kinds": [w.kind for w in self.warnings],
        }


def recommend(anatomy: Anatomy, inputs: AdviceInputs) -> Recommendation:
    adv = Advisor(anatomy, inputs)
    adv.task_row()
    strategy, names = adv.targets()
    r = adv.rank(names)
    alpha = adv.alpha(r)
    alpha_ratio = alpha / r
    adv.ex.append(R.rslora_rule(r))
    dropout = adv.dropout()
    method = adv.method()
    layers = adv.layers()
    eff, micro, epochs, steps_per_epoch, total = adv.schedule()
    lr_at = len(adv.ex)  # the LR row's place in the table; its value waits for the VRAM fit's final alpha
    sched: AdaLoraSchedule | None = None
    if method == "adalora":
        sched, sched_ex = adalora_schedule(r, total, inputs.rules)
        adv.ex.extend(sched_ex)

    def spec_for(k: Knobs) -> AdapterSpec:
        targets = TargetSpec(k.targets, layers_to_transform=tuple(layers) if layers else None)
        if method == "adalora":
            return AdapterSpec(
                targets,
                r=init_rank(k.r, inputs.rules),
                alpha=alpha_ratio * k.r,
                method="adalora",
                dropout=dropout,
                target_r=k.r,
            )
        return AdapterSpec(targets, r=k.r, alpha=alpha_ratio * k.r, method=method, dropout=dropout)

    def settings_for(k: Knobs) -> MemorySettings:
        return MemorySettings(
            batch_size=k.micro_batch,
            seq_len=inputs.seq_len,
            dtype=inputs.dtype,
            quant=k.quant,
            grad_checkpointing=k.grad_checkpointing,
        )

    def measure(k: Knobs) -> int:
        return estimate_memory(anatomy, spec_for(k), settings_for(k)).total_bytes

    def targets_for(s: str) -> tuple[str, ...]:
        return tuple((seed_targets if inputs.rules == "seed" else role_targets)(anatomy, s)[0])

    knobs = Knobs(r, strategy if strategy in STRATEGIES else "custom", tuple(names), micro, eff // micro)
    steps: list[FitStep] = []
    fits: bool | None = None
    minimum: int | None = None
    if inputs.vram_bytes is not None:
        out = fit_to_vram(knobs, inputs.vram_bytes, measure, targets_for)
        steps, fits, minimum = out.steps, out.fits, out.minimum_vram_bytes
        _note_fit(adv, knobs, out.knobs, alpha_ratio, steps)
        knobs = out.knobs
        if method == "adalora" and sched is not None and knobs.r != sched.target_r:
            sched, sched_ex = adalora_schedule(knobs.r, total, inputs.rules)
            adv.ex = [e for e in adv.ex if e.param not in {x.param for x in sched_ex}] + sched_ex

    n = len(adv.ex)
    lr = adv.lr(knobs.r, alpha_ratio * knobs.r, total)  # lr·α stays put (advise/lr_rule.py)
    rows = adv.ex[n:]
    del adv.ex[n:]
    adv.ex[lr_at:lr_at] = rows
    _lever_rows(adv, knobs, inputs.vram_bytes is not None)
    spec = spec_for(knobs)
    settings = settings_for(knobs)
    budget = count_params(anatomy, spec)
    estimate = estimate_memory(anatomy, spec, settings, budget)
    for w in budget.warnings:
        # A bare name that hits attention and MLP is intended when every linear layer is the target.
        intended = knobs.strategy == "all" and inputs.rules != "seed" and w.kind == "mixed_roles"
        if w not in adv.warnings and not intended:
            adv.warnings.append(w)

    config = _config(anatomy, spec, sched, list(knobs.targets), layers, method)
    training = {
        "learning_rate": lr,
        "effective_batch_size": eff,
        "per_device_train_batch_size": knobs.micro_batch,
        "gradient_accumulation_steps": knobs.grad_accum,
        "num_train_epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "max_steps": total,
        "seq_len": inputs.seq_len,
        "dtype": inputs.dtype,
        "gradient_checkpointing": knobs.grad_checkpointing,
        "quantization": knobs.quant,
        "optimizer": "adamw",
    }
    memory: dict[str, Any] = {**estimate.to_dict(), "vram_bytes": inputs.vram_bytes, "fits": fits}
    if minimum is not None:
        memory["minimum_vram_bytes"] = minimum
    return Recommendation(
        model=anatomy.source,
        rules=inputs.rules,
        method=method,
        task=adv.task.name,
        config=config,
        training=training,
        explanations=adv.ex,
        trainable_params=budget.trainable_params,
        trainable_percent=budget.trainable_percent,
        memory=memory,
        fit_steps=steps,
        warnings=adv.warnings,
    )


def _config(
    anatomy: Anatomy,
    spec: AdapterSpec,
    sched: AdaLoraSchedule | None,
    targets: list[str],
    layers: list[int] | None,
    method: str,
) -> dict[str, Any]:
    """PEFT keyword arguments with every recommended value explicit (defaults included), in the order
    PEFT's docs list them. ``AdapterSpec.peft_kwargs`` (and the AdaLoRA schedule's) write the values —
    the one writer of PEFT kwargs; this adds the defaults PEFT would assume and the model's own keys."""
    kw = spec.peft_kwargs(targets)
    out: dict[str, Any] = {}
    if method == "adalora" and sched is not None:
        out["init_r"], out["target_r"] = kw.pop("init_r"), kw.pop("target_r")
        out.update({k: v for k, v in sched.peft_kwargs().items() if k not in out})
    else:
        kw.pop("init_r", None), kw.pop("target_r", None)
        out["r"] = kw.pop("r")
    for key in ("lora_alpha", "lora_dropout", "target_modules"):
        out[key] = kw.pop(key)
    if method != "adalora":
        out["use_dora"] = kw.pop("use_dora", False)
        out["use_rslora"] = kw.pop("use_rslora", False)
    out.update(kw)  # layers_to_transform and anything else the spec holds
    out["bias"] = "none"
    adapted = resolve(anatomy, TargetSpec(tuple(targets))).modules
    if any(m.kind == "conv1d" for m in adapted):
        # GPT-2's Conv1D stores W transposed; PEFT would flip this itself, with a warning.
        out["fan_in_fan_out"] = True
    peft_task = task_type(anatomy)
    if peft_task:
        out["task_type"] = peft_task
    return out


def _note_fit(adv: Advisor, before: Knobs, after: Knobs, alpha_ratio: float, steps: list[FitStep]) -> None:
    """Rewrite the explanations of values the VRAM fit changed, and add rows for the fit-only knobs."""
    why = "VRAM fit: " + "; ".join(f"{s.action} ({s.change})" for s in steps)
    a_before, a_after = alpha_ratio * before.r, alpha_ratio * after.r
    changed: dict[str, tuple[Any, Any]] = {
        "r": (before.r, after.r),
        "lora_alpha": (a_before, int(a_after) if a_after.is_integer() else a_after),
        "target_modules": (list(before.targets), list(after.targets)),
    }
    for idx, e in enumerate(adv.ex):
        if e.param in changed and changed[e.param][0] != changed[e.param][1]:
            adv.ex[idx] = e.with_value(changed[e.param][1], why)
    if before.micro_batch != after.micro_batch:
        for idx, e in enumerate(adv.ex):
            if e.param == "per_device_train_batch_size":
                adv.ex[idx] = replace(
                    e.with_value(after.micro_batch, why),
                    rule=f"micro-batch {after.micro_batch} × gradient accumulation {after.grad_accum} = "
                    f"effective batch {after.micro_batch * after.grad_accum}",
                )


def _lever_rows(adv: Advisor, after: Knobs, vram_given: bool) -> None:
    """Rows for the two levers only the fit turns on."""
    if not vram_given:
        after = replace(after, grad_checkpointing=False, quant="none")
    adv.ex.append(
        Explanation(
            "gradient_checkpointing",
            after.grad_checkpointing,
            "on, needed to fit"
            if after.grad_checkpointing
            else ("off: not needed to fit" if vram_given else "off: no --vram given") + " (it costs ≈ 30 % step time)",
            S.CHECKPOINTING,
        )
    )
    adv.ex.append(
        Explanation(
            "quantization",
            after.quant,
            "4-bit NF4 base, needed to fit"
            if after.quant == "4bit"
            else ("none: the 16-bit base fits" if vram_given else "none: no --vram given"),
            S.QLORA,
        )
    )
