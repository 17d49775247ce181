"""The real objective: one run of a ``RunConfig`` on the trial runner (base model loaded once per worker),
with the memory estimate attached so the report can set estimated against measured memory."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from loratune.errors import LoratuneError
from loratune.search.space import RunConfig
from loratune.trial.types import TrainSettings, TrialResult

# Settings that never change what a run learns, only what it reports: left out of the cache key so a
# pruning strategy (which evaluates midway) can reuse a plain run and the other way round.
NOT_IN_KEY = ("eval_every",)


def settings_identity(settings: TrainSettings) -> dict[str, Any]:
    return {k: v for k, v in settings.to_dict().items() if k not in NOT_IN_KEY and k != "learning_rate"}


class RunnerObjective:
    """``(config, on_eval) → TrialResult`` over a :class:`~loratune.trial.TrialRunner`."""

    def __init__(
        self,
        runner: Any,
        anatomy: Any,
        settings: TrainSettings,
        train: Sequence[Any],
        val: Sequence[Any],
        reference: Sequence[Any] | None = None,
        *,
        progress: bool = True,
        before_run: Callable[[RunConfig], None] | None = None,
    ) -> None:
        self.runner, self.anatomy, self.settings = runner, anatomy, settings
        self.train, self.val, self.reference = train, val, reference or None
        self.progress = progress
        self.before_run = before_run
        self.seq_len = min(settings.max_length, max((len(getattr(x, "input_ids", x)) for x in train), default=1))

    def at_steps(self, steps: int) -> RunnerObjective:
        """The same objective training ``steps`` steps a run, without midway evaluations (a ladder rung)."""
        settings = replace(self.settings, max_steps=steps, eval_every=None)
        return RunnerObjective(self.runner, self.anatomy, settings, self.train, self.val, self.reference,
                               progress=self.progress, before_run=self.before_run)  # fmt: skip

    def __call__(self, config: RunConfig, on_eval: Callable[[int, float], bool] | None) -> TrialResult:
        spec = config.variant.adapter_spec(self.anatomy.num_layers)
        settings = replace(self.settings, learning_rate=config.learning_rate)
        if self.before_run is not None:
            self.before_run(config)
        try:
            result: TrialResult = self.runner.run(
                spec, settings, self.train, self.val, self.reference, on_eval=on_eval, progress=self.progress
            )
        except LoratuneError as e:
            # A config PEFT or the target resolver refuses: a finished, failed outcome. The estimate would
            # refuse the same spec for the same reason, so this run has none.
            return TrialResult(status="failed", message=e.one_line())
        result.estimated_memory_bytes = self.estimate_memory(spec, settings)
        return result

    def estimate_memory(self, spec: Any, settings: TrainSettings) -> int:
        """The budget stage's peak-memory estimate of one step of this run (CPU, the run's dtype)."""
        from loratune.budget.memory import MemorySettings, estimate_memory

        ms = MemorySettings(
            batch_size=settings.batch_size,
            seq_len=self.seq_len,
            dtype=settings.compute_dtype,
            quant=getattr(self.runner, "quant", "none"),
            grad_checkpointing=settings.grad_checkpointing,
            device="cuda" if str(getattr(self.runner, "device", "cpu")).startswith("cuda") else "cpu",
        )
        return int(estimate_memory(self.anatomy, spec, ms).total_bytes)
