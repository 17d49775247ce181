"""AdaLoRA's step schedule, one definition for the advice (``advise/adalora.py``) and the trial
(``trial/loop.py``). Torch-free: it imports nothing but the error root.

PEFT's semantics (peft/tuners/adalora/config.py, AdaLoraConfig; model.py ``update_and_allocate``):
- ``total_step``: optimizer steps of the whole run (PEFT refuses None);
- ``tinit``: initial steps with the full budget (no pruning);
- ``tfinal``: the *last* ``tfinal`` steps at the final budget — a count, not a step index; PEFT
  fixes the final rank pattern at ``global_step == total_step - tfinal``, so a run whose loop passes
  steps 0 … total_step−1 needs ``tfinal >= 1`` to reach that step;
- between them the budget falls cubically from ``init_r`` to ``target_r`` every ``deltaT`` steps
  [AdaLoRA 2303.10512 Eq. 12]; PEFT requires ``tinit < total_step - tfinal``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from loratune.errors import ConfigError

# (tinit, tfinal) as fractions of total_step, integers so that the arithmetic is exact.
# PEFT's docstring example: tinit 10, tfinal 20 of total_step 100.
PEFT_FRACTIONS = ((10, 100), (20, 100))
# The seed's AdaLoraConfig (seed 003 §3.2): tinit 200, tfinal 1000 of total_step 10000.
SEED_FRACTIONS = ((200, 10_000), (1_000, 10_000))
# The seed's deltaT=10, shrunk so that the budgeting phase holds at least 10 reallocations.
DELTA_T_MAX = 10


@dataclass(frozen=True)
class AdaLoraSteps:
    """When AdaLoRA prunes: PEFT's four step fields."""

    total_step: int
    tinit: int
    tfinal: int
    deltaT: int  # noqa: N815 — PEFT's field name

    @property
    def budgeting_steps(self) -> int:
        return self.total_step - self.tfinal - self.tinit

    def peft_kwargs(self) -> dict[str, int]:
        return asdict(self)


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


def adalora_steps(total_step: int | None, rules: str = "combined") -> AdaLoraSteps:
    """tinit, tfinal and deltaT for a run of ``total_step`` optimizer steps: the seed's fractions
    under ``--rules seed``, PEFT's otherwise."""
    if total_step is None:
        raise ConfigError(
            "AdaLoRA needs total_step (PEFT refuses None), derived from the dataset size",
            "pass --dataset-size N or --data FILE",
        )
    if total_step < 1:
        raise ConfigError(f"AdaLoRA needs at least 1 training step, got {total_step}", "use more data or epochs")
    (ti_n, ti_d), (tf_n, tf_d) = SEED_FRACTIONS if rules == "seed" else PEFT_FRACTIONS
    tinit = total_step * ti_n // ti_d
    # At least one final step (see the header), never so many that no budgeting step is left.
    tfinal = min(max(1, total_step * tf_n // tf_d), total_step - tinit - 1)
    budgeting = total_step - tinit - tfinal
    delta = max(1, min(DELTA_T_MAX, budgeting // 10))
    return AdaLoraSteps(total_step, tinit, tfinal, delta)


def init_rank(target_r: int, rules: str) -> int:
    # The paper starts the budget at 1.5× the target [2303.10512 §4] — PEFT's defaults (init_r 12,
    # target_r 8) are that ratio; the seed's example starts at 2× (init_r 16 → target_r 8).
    return 2 * target_r if rules == "seed" else math.ceil(1.5 * target_r)


def adalora_schedule_values(target_r: int, total_step: int | None, rules: str) -> AdaLoraSchedule:
    steps = adalora_steps(total_step, rules)
    return AdaLoraSchedule(
        init_rank(target_r, rules), target_r, steps.tinit, steps.tfinal, steps.deltaT, steps.total_step
    )


__all__ = ["AdaLoraSchedule", "AdaLoraSteps", "adalora_schedule_values", "adalora_steps", "init_rank"]
