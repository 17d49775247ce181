"""AdaLoRA's schedule explained: the values come from :mod:`loratune.budget.adalora_schedule` (the
one definition the trial uses too); this module says where each comes from and where the seed and
the paper disagree."""

from __future__ import annotations

import math

from loratune.advise import explain as S
from loratune.advise.explain import Explanation, disagreement
from loratune.budget.adalora_schedule import (
    PEFT_FRACTIONS,
    SEED_FRACTIONS,
    AdaLoraSchedule,
    adalora_schedule_values,
    init_rank,
)

__all__ = ["AdaLoraSchedule", "adalora_schedule", "init_rank"]


def adalora_schedule(target_r: int, total_step: int | None, rules: str) -> tuple[AdaLoraSchedule, list[Explanation]]:
    sched = adalora_schedule_values(target_r, total_step, rules)
    total_step, tinit, tfinal, delta = sched.total_step, sched.tinit, sched.tfinal, sched.deltaT
    budgeting = sched.budgeting_steps
    frac = tuple(n / d for n, d in (SEED_FRACTIONS if rules == "seed" else PEFT_FRACTIONS))

    ex: list[Explanation] = []
    lit_init = Explanation(
        "init_r",
        math.ceil(1.5 * target_r),
        f"initial budget 1.5× the target: ceil(1.5·{target_r})",
        S.ADALORA,
        {"target_r": target_r},
    )
    seed_init = Explanation("init_r", 2 * target_r, "2× the target, as the seed's 16 → 8", S.SEED_ADALORA)
    if rules == "seed":
        ex.append(disagreement("init_r", seed_init, lit_init, "loratune follows the seed (--rules seed)."))
    else:
        ex.append(disagreement("init_r", lit_init, seed_init, "loratune follows the paper that defines AdaLoRA."))
    ex.append(Explanation("target_r", target_r, "the rank rule's r is the average rank AdaLoRA prunes to", S.ADALORA))
    ex.append(
        Explanation(
            "total_step",
            total_step,
            "steps per epoch × epochs (PEFT needs it before training)",
            S.PEFT_ADALORA,
            {"total_step": total_step},
        )
    )
    which = "seed's 200/10,000 and 1,000/10,000" if rules == "seed" else "PEFT docstring's 10/100 and 20/100"
    src = S.SEED_ADALORA if rules == "seed" else S.PEFT_ADALORA
    ex.append(Explanation("tinit", tinit, f"{frac[0]:.0%} of total_step with the full budget ({which})", src))
    ex.append(
        Explanation(
            "tfinal",
            tfinal,
            f"the last {frac[1]:.0%} of total_step at the final budget; PEFT reads tfinal as a count of final "
            "steps, not the step where pruning ends",
            src,
            note="budget falls cubically between tinit and total_step − tfinal",
        )
    )
    ex.append(
        Explanation(
            "deltaT",
            delta,
            f"the seed's 10, at most budgeting steps / 10 ({budgeting} budgeting steps)",
            S.SEED_ADALORA,
            {"budgeting_steps": budgeting},
        )
    )
    ex.append(
        Explanation(
            "orth_reg_weight",
            0.1,
            "0.1: the seed's value, inside the paper's 0.1–0.5",
            f"{S.SEED_ADALORA}; {S.ADALORA}",
        )
    )
    ex.append(
        Explanation("beta1, beta2", 0.85, "EMA of sensitivity and uncertainty (paper and PEFT default)", S.ADALORA)
    )
    return sched, ex
