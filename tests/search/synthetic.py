"""A synthetic objective for tests only: a deterministic function of the run config that behaves like a
LoRA trial (rank saturates, all-linear beats attention, LR has an optimum in lr·scaling). No training."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from loratune.search.space import RunConfig
from loratune.trial.types import TrialResult

MODULE_WIDTH = {"attention": 4 * 64 * 2, "all-linear": 7 * 64 * 2, "qv": 2 * 64 * 2, "mlp": 3 * 64 * 2}
STEPS = 8
TOKENS_PER_STEP = 100


def synthetic_loss(config: RunConfig, steps: int = STEPS) -> float:
    """Longer runs (``steps`` > STEPS, a ladder rung) lower the loss, let higher ranks pay off (capacity
    runs out later) and move the LR optimum down, as real runs do."""
    v = config.variant
    length = steps / STEPS
    capacity = 0.6 if v.modules == "all-linear" else 0.4
    rank_gain = capacity * (1 - math.exp(-v.r / (6 * length**0.5)))  # saturates: doubling past ~16 barely pays
    best_lr = 4e-4 * length**-0.3  # optimum at lr·scaling = 4e-4 at STEPS steps
    lr_term = 0.08 * math.log(config.learning_rate * v.scaling / best_lr) ** 2
    dora = -0.01 if v.method == "dora" else 0.0
    return 2.5 - rank_gain + lr_term + dora


class SyntheticObjective:
    """Callable like the real runner adapter; records every config it actually ran."""

    def __init__(self, sleep: float = 0.0, diverge_above: float = 5e-3, steps: int = STEPS) -> None:
        self.sleep = sleep
        self.diverge_above = diverge_above
        self.steps = steps
        self.ran: list[RunConfig] = []
        self.ran_at: list[tuple[int, RunConfig]] = []  # (steps, config) of every run, ladder rungs included
        self.rungs: dict[int, SyntheticObjective] = {}

    def at_steps(self, steps: int) -> SyntheticObjective:
        """The same objective at another run length (a ladder rung); its runs are logged here too."""
        if steps not in self.rungs:
            rung = type(self)(self.sleep, self.diverge_above, steps)
            rung.ran_at = self.ran_at  # one log of every run, whatever its length
            self.rungs[steps] = rung
        return self.rungs[steps]

    def loss(self, config: RunConfig) -> float:
        return synthetic_loss(config, self.steps)

    def __call__(self, config: RunConfig, on_eval: Callable[[int, float], bool] | None) -> TrialResult:
        self.ran.append(config)
        self.ran_at.append((self.steps, config))
        final = self.loss(config)
        n = self.steps
        v = config.variant
        params = v.r * MODULE_WIDTH.get(v.modules, 512) * 30
        if config.learning_rate * v.scaling > self.diverge_above:
            return TrialResult(status="diverged", message="loss became nan", train_tokens=TOKENS_PER_STEP)
        curve = []
        for step in range(2, n + 1, 2 * max(1, n // STEPS)):
            time.sleep(self.sleep)
            loss = final + 0.5 * (1 - step / n)
            curve.append((step, loss))
            if on_eval is not None and on_eval(step, loss):
                return TrialResult(
                    status="pruned", val_curve=curve, train_tokens=step * TOKENS_PER_STEP, trainable_params=params
                )
        return TrialResult(
            status="ok",
            val_loss_before=3.0,
            val_loss_after=final,
            val_ppl_before=math.exp(3.0),
            val_ppl_after=math.exp(final),
            ref_ppl_before=10.0,
            ref_ppl_after=10.0 * (1 + 0.002 * v.r),  # forgetting grows with rank
            peak_memory_bytes=100_000_000 + params * 16,
            wall_seconds=1.0,
            tokens_per_second=1000.0 / (1 + params / 1e6),
            train_tokens=n * TOKENS_PER_STEP,
            trainable_params=params,
            steps=n,
            loss_curve=[(s, final + 0.6 * (1 - s / n)) for s in range(1, n + 1)],
            val_curve=curve,
        )
