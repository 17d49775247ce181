"""What a search reports while it runs: typed events handed to a ``log`` callback.

The library decides nothing by message text; a caller (the CLI, the bench, a test) chooses how to show
each kind. Every event has a ``kind`` (its class name in snake case) for callers that dispatch on data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from loratune.search.space import RunConfig, Variant

if TYPE_CHECKING:
    from loratune.search.study import TrialRecord


@dataclass(frozen=True)
class ModelLoading:
    kind: ClassVar[str] = "model_loading"
    model: str


@dataclass(frozen=True)
class SearchStarted:
    """The search is set up: what it runs on, and how much the study already holds."""

    kind: ClassVar[str] = "search_started"
    strategy: str
    model: str
    n_train: int
    n_val: int
    n_reference: int
    steps: int
    batch_size: int
    baseline: Variant
    base_lr: float
    finished_before: int = 0


@dataclass(frozen=True)
class StudyOpened:
    """The study exists from here on: a run that finishes is kept, whatever stops the search later.
    ``custom_storage``: it lives at the caller's ``storage`` URL, not in ``out/study.db``."""

    kind: ClassVar[str] = "study_opened"
    model: str
    out: Path
    custom_storage: bool = False

    def resume_note(self) -> str:
        """What survives an interrupt, and the command that continues the search."""
        if self.custom_storage:
            return (
                f"finished runs are kept in the --storage study; continue with "
                f"`loratune search {self.model} --out {self.out} --storage <the same URL> --resume`"
            )
        study = self.out / ("study.journal" if (self.out / "study.journal").is_file() else "study.db")
        return (
            f"finished runs are kept in {study}; continue with `loratune search {self.model} --out {self.out} --resume`"
        )


@dataclass(frozen=True)
class WorkersStarted:
    """``started`` local worker processes joined the study (``running`` were already there, from before a
    coordinator restart); each writes its log under ``logs``. ``here``: the coordinator trains as worker 0."""

    kind: ClassVar[str] = "workers_started"
    started: int
    running: int
    logs: Path
    here: bool = False


@dataclass(frozen=True)
class BudgetSized:
    """``time_budget`` chose these sizes from a throughput probe (seconds per step / per eval example)."""

    kind: ClassVar[str] = "budget_sized"
    minutes: float
    steps: int
    val_examples: int
    lr_runs: int
    seconds_per_step: float
    seconds_per_eval_example: float
    planned_runs: int
    estimated_seconds: float


@dataclass(frozen=True)
class TrialsRecovered:
    """Trials a killed worker left RUNNING, now marked failed (their configs run again)."""

    kind: ClassVar[str] = "trials_recovered"
    numbers: tuple[int, ...]


@dataclass(frozen=True)
class StageStarted:
    kind: ClassVar[str] = "stage_started"
    name: str


@dataclass(frozen=True)
class RunStarted:
    """A run is about to train (runs answered from the cache never start). ``index`` counts trained runs
    of this call from 1; ``total_estimate`` is index + the runs the plan still expects (None: unknown)."""

    kind: ClassVar[str] = "run_started"
    config: RunConfig
    index: int
    total_estimate: int | None = None


@dataclass(frozen=True)
class RunFinished:
    """A run request was answered: trained (``record.cached_study is None``) or from the cache.
    ``runs_left``: the strategy's estimate of the runs it will still request (None: unknown)."""

    kind: ClassVar[str] = "run_finished"
    record: TrialRecord
    seconds: float
    runs_left: int | None = None

    @property
    def trained(self) -> bool:
        return self.record.cached_study is None


@dataclass(frozen=True)
class VariantScored:
    """A variant's LR sweep ended: its best finite perplexity, or none (diverged/failed at every LR)."""

    kind: ClassVar[str] = "variant_scored"
    variant: Variant
    ppl: float | None
    learning_rate: float | None
    stage: str = ""


@dataclass(frozen=True)
class EtaUpdate:
    """After a trained run: the runs the plan still expects × the measured seconds per trained run."""

    kind: ClassVar[str] = "eta_update"
    runs_done: int
    runs_left: int
    seconds_per_run: float

    @property
    def seconds_left(self) -> float:
        return self.runs_left * self.seconds_per_run


@dataclass(frozen=True)
class FinalTraining:
    kind: ClassVar[str] = "final_training"
    steps: int | None


SearchEvent = (
    ModelLoading
    | SearchStarted
    | StudyOpened
    | WorkersStarted
    | BudgetSized
    | TrialsRecovered
    | StageStarted
    | RunStarted
    | RunFinished
    | VariantScored
    | EtaUpdate
    | FinalTraining
)
Log = Callable[[SearchEvent], None]


def ignore(_event: SearchEvent) -> None:
    """The default ``log``: a library call prints nothing."""


@dataclass
class EtaClock:
    """Seconds per trained run, measured; turns a strategy's ``runs_left`` into :class:`EtaUpdate`."""

    seconds: list[float] = field(default_factory=list)
    runs_left: int | None = None

    def finished(self, event: RunFinished) -> EtaUpdate | None:
        self.runs_left = event.runs_left
        if not event.trained:
            return None
        self.seconds.append(event.seconds)
        if event.runs_left is None:
            return None
        per_run = sum(self.seconds) / len(self.seconds)
        return EtaUpdate(len(self.seconds), event.runs_left, per_run)
