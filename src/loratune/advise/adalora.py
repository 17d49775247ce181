"""AdaLoRA's schedule in PEFT's semantics (peft/tuners/adalora/config.py, AdaLoraConfig):

- ``total_step``: optimizer steps of the whole run (PEFT refuses None);
- ``tinit``: initial steps with the full budget (no pruning);
- ``tfinal``: the *last* ``tfinal`` steps, with the final budget fixed — a count, not a step index
  (the seed's comment "Rank 조절 종료 스텝" reads it as the step where pruning ends);
- between them the budget falls cubically from ``init_r`` to ``target_r`` per matrix, every
  ``deltaT`` steps [AdaLoRA 2303.10512 Eq. 12]; PEFT requires ``tinit < total_step - tfinal``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from loratune.advise import explain as S
from loratune.advise.explain import Explanation, disagreement
from loratune.errors import ConfigError


@dataclass(frozen=True)
class AdaLoraSchedule:
    init_r: int
    target_r: int
    tinit: int
    tfinal: int
    deltaT: int  # noqa: N815 — PEFT's field name
    total_step: int
    orth_reg_weight: float = 0.1
    beta1: float = 0.85
    beta2: float = 0.85

    @property
    def budgeting_steps(self) -> int:
        return self.total_step - self.tfinal - self.tinit

    def peft_kwargs(self) -> dict[str, int | float]:
        return asdict(self)


def init_rank(target_r: int, rules: str) -> int:
    # The paper starts the budget at 1.5× the target [2303.10512 §4] — PEFT's defaults (init_r 12,
    # target_r 8) are that ratio; the seed's example starts at 2× (init_r 16 → target_r 8).
    return 2 * target_r if rules == "seed" else math.ceil(1.5 * target_r)


def adalora_schedule(target_r: int, total_step: int | None, rules: str) -> tuple[AdaLoraSchedule, list[Explanation]]:
    if total_step is None:
        raise ConfigError(
            "AdaLoRA needs total_step (PEFT refuses None), derived from the dataset size",
            "pass --dataset-size N or --data FILE",
        )
    if total_step < 1:
        raise ConfigError(f"AdaLoRA needs at least 1 training step, got {total_step}", "use more data or epochs")
    seed_frac, peft_frac = (200 / 10_000, 1_000 / 10_000), (10 / 100, 20 / 100)
    frac = seed_frac if rules == "seed" else peft_frac
    tinit, tfinal = int(total_step * frac[0]), int(total_step * frac[1])
    budgeting = total_step - tinit - tfinal
    # The seed's deltaT=10, shrunk so the budgeting phase holds at least 10 reallocations.
    delta = max(1, min(10, budgeting // 10))
    init_r = init_rank(target_r, rules)
    sched = AdaLoraSchedule(init_r, target_r, tinit, tfinal, delta, total_step)

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
