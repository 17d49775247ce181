"""Exact trainable-parameter counts, before any model is wrapped.

Per adapted module (PEFT's own construction, peft/tuners/lora/layer.py and adalora/layer.py):
- LoRA  [2106.09685]: A (r × in) + B (out × r)          = r·(in + out)
- bias (``lora_bias``): B gets a bias                      + out
- DoRA  [2402.09353]: one magnitude per output feature   + out  (embedding: + embedding_dim)
- AdaLoRA [2303.10512]: A, B and the singular values E (r) = r·(in + out + 1); plus one frozen
  ``ranknum`` scalar that counts toward PEFT's total but is not trainable
- ``modules_to_save``: a full trainable copy of each matched module.
The seed's GPT-2 example (r=8, ``c_attn, c_proj``): 24 modules; 12·8·(768+2304) + 24·8·(768+768)
[attn and MLP ``c_proj``] = 811,008 — the figure only holds because ``c_proj`` hits both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from loratune.anatomy.targets import Resolution, resolve, with_task_heads
from loratune.anatomy.types import AdaptableModule, Anatomy, TargetWarning
from loratune.budget.spec import AdapterSpec
from loratune.errors import ConfigError, TargetError


@dataclass(frozen=True)
class ModuleBudget:
    name: str
    layer: int | None
    role: str
    in_features: int
    out_features: int
    r: int
    alpha: float
    params: int


@dataclass
class ParamBudget:
    """The parameter side of a budget, with PEFT's own definitions of total and percent."""

    trainable_params: int
    base_params: int
    all_params: int  # PEFT's get_nb_trainable_parameters()[1]: base + adapter (+ frozen extras)
    modules: list[ModuleBudget]
    modules_to_save_params: int
    peft_config: dict[str, object]
    warnings: list[TargetWarning] = field(default_factory=list)

    @property
    def trainable_percent(self) -> float:
        return 100.0 * self.trainable_params / self.all_params

    def per_layer(self) -> dict[int | None, int]:
        out: dict[int | None, int] = {}
        for m in self.modules:
            out[m.layer] = out.get(m.layer, 0) + m.params
        return out


def _pattern_value(patterns: dict[str, float] | dict[str, int], name: str) -> str | None:
    # PEFT's get_pattern_key (peft/utils/other.py): first key with re.match(rf"(.*\.)?({key})$", name).
    for key in patterns:
        if re.match(rf"(.*\.)?({key})$", name):
            return key
    return None


def module_params(m: AdaptableModule, r: int, spec: AdapterSpec) -> int:
    n = r * (m.in_features + m.out_features)
    if spec.method == "adalora":
        return n + r
    if spec.lora_bias and m.kind != "embedding":
        n += m.out_features
    if spec.method == "dora":
        n += m.out_features
    return n


def count_params(anatomy: Anatomy, spec: AdapterSpec, resolution: Resolution | None = None) -> ParamBudget:
    res = resolution or resolve(anatomy, spec.targets)
    if spec.method == "adalora" and any(m.kind == "embedding" for m in res.modules):
        raise TargetError("AdaLoRA cannot adapt embeddings", "drop the embedding targets or use LoRA/DoRA")
    mods: list[ModuleBudget] = []
    for m in res.modules:
        rk = _pattern_value(spec.rank_pattern, m.name) if spec.method != "adalora" else None
        ak = _pattern_value(spec.alpha_pattern, m.name) if spec.method != "adalora" else None
        r = spec.rank_pattern[rk] if rk is not None else spec.r
        alpha = spec.alpha_pattern[ak] if ak is not None else spec.alpha
        mods.append(
            ModuleBudget(m.name, m.layer, m.role, m.in_features, m.out_features, r, alpha, module_params(m, r, spec))
        )
    _check_ranks_fit(mods, spec)
    # A classifier's head (PEFT's SEQ_CLS default modules_to_save) is a trained copy too.
    saved = _modules_to_save_params(anatomy, with_task_heads(anatomy, spec.targets).modules_to_save)
    trainable = sum(m.params for m in mods) + saved
    frozen_extra = len(mods) if spec.method == "adalora" else 0  # AdaLoRA's ranknum scalars
    return ParamBudget(
        trainable_params=trainable,
        base_params=anatomy.total_params,
        all_params=anatomy.total_params + trainable + frozen_extra,
        modules=mods,
        modules_to_save_params=saved,
        peft_config=spec.peft_kwargs(res.peft_target_modules),
        warnings=list(res.warnings),
    )


def _check_ranks_fit(mods: list[ModuleBudget], spec: AdapterSpec) -> None:
    by_rank: dict[int, list[ModuleBudget]] = {}
    for m in mods:
        by_rank.setdefault(m.r, []).append(m)
    for r, group in by_rank.items():
        check_rank_fits(r, group, "r" if r == spec.r else "a rank_pattern rank")


def check_rank_fits(r: int, modules: Sequence[AdaptableModule | ModuleBudget], what: str = "r") -> None:
    """Refuse a rank above min(in, out) of every module it is given to, naming the largest sensible r.
    LoRA's update BA has rank at most min(in, out) [2106.09685 §4.1], so a larger r only adds parameters
    (and PEFT builds them all the same)."""
    if not modules:
        return
    widest = max(modules, key=lambda m: min(m.in_features, m.out_features))
    cap = min(widest.in_features, widest.out_features)
    if r > cap:
        raise ConfigError(
            f"{what} = {r:,} is above min(in, out) of every module it adapts; the largest sensible r is {cap} "
            f"({widest.name}: {widest.in_features} → {widest.out_features})",
            f"use --r {cap} or less (BA has rank ≤ min(in, out)); ranks of 8–64 are usual",
        )


def _modules_to_save_params(anatomy: Anatomy, names: tuple[str, ...]) -> int:
    """PEFT copies each module whose name *ends with* an entry (plain ``endswith``, no dot)."""
    total = 0
    for entry in names:
        hits = [n for n in anatomy.module_params if n.endswith(entry)]
        if not hits:
            raise TargetError(
                f"modules_to_save entry {entry!r} matches no module with parameters", "run `loratune inspect`"
            )
        # A match inside an already-copied module is part of that copy.
        top = [h for h in hits if not any(h != o and h.startswith(o + ".") for o in hits)]
        total += sum(anatomy.module_params[h] for h in top)
    return total
