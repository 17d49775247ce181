"""The search's starting point: the advice stage's recommendation as a :class:`Variant` and an
:class:`LRPlan` centred on its learning rate (the seed's §4.2 baseline when advice is unavailable)."""

from __future__ import annotations

from typing import Any

from loratune.anatomy.targets import TargetSpec, resolve
from loratune.budget.spec import AdapterSpec
from loratune.errors import LoratuneError
from loratune.search.lr import LRPlan
from loratune.search.space import Variant

NAMED_SETS = ("attention", "all-linear", "mlp", "qv")
SEED_BASELINE = Variant(8, 16.0, "attention")  # 000 §4.2: r=8, alpha=16 (2r), attention
SEED_LR = 2e-4


def canonical_modules(anatomy: Any, targets: list[str] | str) -> str:
    """The named set (``attention``, ``all-linear``...) that adapts exactly these modules, else a comma list,
    so a recommendation and a stage's set that adapt the same matrices are one variant (one cache key)."""
    spec = TargetSpec(target_modules=targets if isinstance(targets, str) else tuple(targets))
    chosen = {m.name for m in resolve(anatomy, spec).modules}
    for name in NAMED_SETS:
        try:
            named = TargetSpec(target_modules=name if name == "all-linear" else (name,))
            if {m.name for m in resolve(anatomy, named).modules} == chosen:
                return name
        except LoratuneError:
            continue
    return targets if isinstance(targets, str) else ",".join(targets)


def from_recommendation(anatomy: Any, rec: dict[str, Any]) -> tuple[Variant, float]:
    """(variant, learning rate) of ``Recommendation.to_dict()``; AdaLoRA is searched as plain LoRA at init_r.

    The PEFT kwargs are read by the one reader of them, :meth:`AdapterSpec.from_peft_kwargs`."""
    spec = AdapterSpec.from_peft_kwargs(rec["config"])
    variant = Variant(
        r=spec.r,
        alpha=spec.alpha,
        modules=canonical_modules(
            anatomy,
            list(spec.targets.target_modules)
            if not isinstance(spec.targets.target_modules, str)
            else spec.targets.target_modules,
        ),
        method="lora" if spec.method == "adalora" else spec.method,
        dropout=spec.dropout,
        use_rslora=spec.use_rslora,
    )
    return variant, float(rec.get("training", {}).get("learning_rate", SEED_LR))


def recommended_baseline(
    anatomy: Any, dataset_size: int, task: str | None = None, total_steps: int | None = None
) -> tuple[Variant, float, dict]:
    """Ask the advice stage; fall back to the seed's baseline if it is not installed. ``total_steps``: the
    optimizer steps of the search's runs, so the LR is the one for that run length (None: the advice's own
    schedule for ``dataset_size``)."""
    try:
        from loratune.advise import AdviceInputs, recommend
    except ImportError:
        return SEED_BASELINE, SEED_LR, {}
    rec = recommend(anatomy, AdviceInputs(task=task, dataset_size=dataset_size, total_steps=total_steps)).to_dict()
    variant, lr = from_recommendation(anatomy, rec)
    return variant, lr, rec


def plan_for(variant: Variant, lr: float, runs: int) -> LRPlan:
    return LRPlan(base_lr=lr, base_scaling=variant.scaling, max_runs=runs)
