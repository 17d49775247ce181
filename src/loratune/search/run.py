"""A whole search as one library call: ``run_search(SearchConfig(...), out) -> SearchResult``.

setup (model, data, recommendation) → fingerprint → study → strategy (staged or optuna) → knee →
``best_config.json`` + exports → optionally the final adapter. The CLI, the bench and the tests call
this; what happens along the way reaches the caller as typed events (``search.events``) through ``log``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loratune.errors import ConfigError
from loratune.outputs import check_output_dir
from loratune.search.config import (
    RANKS,
    SearchConfig,
    content_digest,
    study_fingerprint,
    trial_code_hash,
)
from loratune.search.events import (
    EtaClock,
    FinalTraining,
    Log,
    RunFinished,
    RunStarted,
    SearchEvent,
    SearchStarted,
    StudyOpened,
    TrialsRecovered,
    ignore,
)
from loratune.search.knee import Choice, VariantScore, choose, score_variants
from loratune.search.ladder import Challenger
from loratune.search.lr import expected_runs
from loratune.search.outdir import removed_on_failure
from loratune.search.saved import SEARCH_JSON, SavedSearch, read_search_json, write_search_json
from loratune.search.space import RunConfig, Variant
from loratune.search.staged import SearchOutcome, StagedOptions, planned_variants
from loratune.search.storage import open_early
from loratune.search.study import Objective, SearchStudy, run_counts
from loratune.trial.types import TrainSettings, TrialResult

__all__ = [
    "SearchConfig",
    "SearchInputs",
    "SearchResult",
    "choose_for",
    "inputs_fingerprint",
    "load_inputs",
    "run_counts",
    "run_search",
    "staged_options",
    "optuna_options",
    "study_fingerprint",
    "trial_code_hash",
]


@dataclass
class SearchInputs:
    """What a search runs on, loaded once: the model (anatomy + runner), tokenized data, the advice.
    ``runner`` may be None when the caller brings its own objective (tests); then nothing trains here."""

    model: str  # the source's label (part of the fingerprint)
    anatomy: Any
    train: Sequence[Any]
    val: Sequence[Any]
    reference: Sequence[Any]
    data_digest: str
    baseline: Variant
    recommended_lr: float
    recommendation: dict[str, Any] = field(default_factory=dict)
    runner: Any = None
    compute_dtype: str = "bf16"


@dataclass(frozen=True)
class SearchResult:
    """What a search found and left behind."""

    config: SearchConfig  # as run (after --time-budget sized it)
    outcome: SearchOutcome  # the strategy, its stages and the knee's choice
    scores: list[VariantScore]  # every variant of the study at its best LR
    runs_trained: int  # runs that trained (the study's, over every sitting)
    runs_from_cache: int  # run requests answered by an identical earlier run
    tokens: int  # training tokens of the trained runs
    best: dict[str, Any]  # best_config.json
    written: tuple[Path, ...]
    seconds: float
    final: TrialResult | None = None

    @property
    def choice(self) -> Choice:
        return self.outcome.choice


def choose_for(config: SearchConfig, scores: list[VariantScore]) -> Choice:
    """The knee with this search's rule (cost, tolerance, max forgetting): the search and the report both
    pick through here."""
    return choose(scores, cost=config.cost, tolerance=config.tolerance, max_forgetting=config.max_forgetting)


def staged_options(config: SearchConfig) -> StagedOptions:
    return StagedOptions(
        max_r=config.max_r,
        module_sets=config.module_sets,
        try_dora=config.try_dora,
        try_layers=config.try_layers,
        cost=config.cost,
        tolerance=config.tolerance,
        max_forgetting=config.max_forgetting,
        metric=config.metric,
    )


def optuna_options(config: SearchConfig) -> Any:
    from loratune.search.optuna_strategy import OptunaOptions

    half = (config.lr_runs - 1) // 2
    return OptunaOptions(
        n_trials=config.trials,
        ranks=tuple(r for r in RANKS if r <= config.max_r),
        module_sets=config.module_sets,
        try_dora=config.try_dora,
        pruner=config.pruner,
        seed=config.seed,
        cost=config.cost,
        tolerance=config.tolerance,
        max_forgetting=config.max_forgetting,
        metric=config.metric,
        # the same LR candidates the staged sweep walks: center and the next ladder step(s)
        lr_steps=(-half, config.lr_runs - 1 - half),
    )


def load_inputs(config: SearchConfig, *, log: Log = ignore) -> SearchInputs:
    """Resolve the model, load it once, tokenize the data and ask the advice stage for the baseline."""
    from loratune.models import load_anatomy, resolve_source
    from loratune.search.baseline import recommended_baseline
    from loratune.search.data import load_search_data
    from loratune.search.events import ModelLoading
    from loratune.trial import TrialRunner

    source = resolve_source(config.model)
    from loratune.data.classification import resolve_task_type

    if resolve_task_type(config.task_type, config.data) == "seq-cls":  # a classifier: search/cls_data.py
        from loratune.search.cls_data import load_cls_inputs

        return load_cls_inputs(config, source, log=log)
    if config.metric != "loss":
        raise ConfigError(
            f"--metric {config.metric} needs classification data ({config.data} is generation data)",
            "use --metric loss, or classification data (text + label columns)",
        )
    anatomy = load_anatomy(source)
    config.check_against(anatomy)  # a --modules set that matches nothing is refused before the weights load
    log(ModelLoading(source.label))
    # auto: bf16 where the device runs it natively (CPU: AVX512-BF16/AMX; CUDA: bf16-capable), else fp32/fp16
    runner = TrialRunner(source, compute_dtype="auto", threads=config.threads, device=config.device, quant=config.quant)
    data = load_search_data(
        config.data,
        runner.tokenizer,
        max_length=config.max_length,
        seed=config.seed,
        val_examples=config.val_examples,
        reference=config.reference,
        val_data=config.val_data,
    )
    # the LR rule for the search's own run length: short runs want a higher LR (advise/lr_rule.py)
    baseline, rec_lr, rec = recommended_baseline(anatomy, len(data.train), config.task, total_steps=config.steps)
    digest = content_digest(data.path)
    if data.val_path is not None:
        digest += "+" + content_digest(data.val_path)
    return SearchInputs(
        # A quantized base is another model for the study (its runs are not the dense base's).
        model=source.label if config.quant == "none" else f"{source.label} ({config.quant})",
        anatomy=anatomy,
        train=data.train,
        val=data.val,
        reference=data.reference,
        data_digest=digest,
        baseline=baseline,
        recommended_lr=rec_lr,
        recommendation=rec,
        runner=runner,
        compute_dtype=runner.compute_dtype,
    )


def run_search(
    config: SearchConfig,
    out: Path,
    *,
    log: Log = ignore,
    storage: str | None = None,
    progress: bool = False,
    inputs: SearchInputs | None = None,
    objective: Objective | None = None,
    quiet_optuna: bool = True,
    workers: int = 1,
    worker_factory: str | None = None,
) -> SearchResult:
    """Run the search ``config`` describes, persisted in ``out`` (``out/study.db`` unless ``storage``).

    A second call with the same config and folder continues the study: finished runs are answered from
    it, never trained again. ``inputs``/``objective`` replace the loaded model and the real trials (tests,
    other back ends); ``progress`` shows the trial loop's step bar; ``quiet_optuna`` keeps Optuna's own
    log at warnings for the duration of the call. ``workers`` > 1 starts that many local worker processes
    on the study (``search.pool``; with ``config.device`` cuda, worker i trains on cuda:i; ``worker_factory``
    a "file.py:function" that builds their inputs and objective instead of loading the model)."""
    started = time.perf_counter()
    out = Path(out)
    with _optuna_verbosity(quiet_optuna):
        # Before any work: a folder that cannot be written, or a --storage that cannot be opened, is
        # refused now (one connection attempt, with a timeout), not after the model has loaded.
        check_output_dir(out)
        opened = open_early(storage)
        if inputs is None:
            inputs = load_inputs(config, log=log)
        else:
            config.check_against(inputs.anatomy)
        sized: dict[str, Any] | None = None
        if config.time_budget is not None:
            from loratune.search.timebudget import fit_to_budget

            config, sized = fit_to_budget(config, inputs, log, time.perf_counter() - started, workers)
        base_lr = config.lr or inputs.recommended_lr
        settings = config.train_settings(base_lr, inputs.compute_dtype)
        val, ref = list(inputs.val)[: config.val_examples], list(inputs.reference)
        fp = inputs_fingerprint(inputs, len(val), len(ref), settings)
        study = _open_study(config, out, opened, fp, workers, storage)
        if sized is None and (out / SEARCH_JSON).is_file():  # a resume keeps what the budget chose
            sized = read_search_json(out / SEARCH_JSON).sized_by_budget
        saved = SavedSearch(replace(config, time_budget=None), fp, storage is not None, sized)
        write_search_json(out, saved)
        if study.recovered:
            log(TrialsRecovered(tuple(study.recovered)))
        log(
            SearchStarted(
                strategy=config.strategy,
                model=inputs.model,
                n_train=len(inputs.train),
                n_val=len(val),
                n_reference=len(ref),
                steps=config.steps,
                batch_size=config.batch_size,
                baseline=inputs.baseline,
                base_lr=base_lr,
                finished_before=len(study.finished()),
            )
        )
        log(StudyOpened(config.model, out, storage is not None))
        if objective is None:
            if inputs.runner is None:
                raise ConfigError("a search without a model runner needs an objective", "pass objective=...")
            from loratune.search.objective import RunnerObjective

            objective = RunnerObjective(
                inputs.runner, inputs.anatomy, settings, inputs.train, val, ref, progress=progress
            )
        rung_studies: list[SearchStudy] = []

        def fingerprint_at(steps: int) -> str:  # a rung's study: the search's settings at its length
            rung = config.train_settings(base_lr, inputs.compute_dtype, steps=steps)
            return inputs_fingerprint(inputs, len(val), len(ref), rung)

        def ladder(outcome: SearchOutcome) -> SearchOutcome:
            if config.finalists < 1:
                return outcome
            return _climb_ladder(config, study, objective, outcome, inputs, base_lr, fingerprint_at, rung_studies,
                                 log)  # fmt: skip

        if workers > 1:
            from loratune.search.pool import pooled_run, threads_of_a_worker

            staged = lambda: _run_strategy(config, study, objective, inputs.baseline, base_lr, log)  # noqa: E731
            with threads_of_a_worker(inputs.runner, workers, config.threads):  # it trains as worker 0
                outcome = pooled_run(config, study, out, workers, staged, inputs.baseline, log,
                                     factory=worker_factory, objective=objective, base_lr=base_lr,
                                     then=ladder)  # fmt: skip
        else:
            outcome = ladder(_run_strategy(config, study, _Tracked(objective, log), inputs.baseline, base_lr, log))

        finished = study.finished()
        scores = score_variants(finished, config.metric)
        trained, cached = run_counts(finished + [r for s in rung_studies for r in s.finished()])
        from loratune.search.final import best_config, write_outputs

        best = best_config(
            outcome,
            [study, *rung_studies],
            inputs.anatomy,
            inputs.model,
            dict(inputs.recommendation.get("training") or {}),
            replace(settings, eval_every=None).to_dict(),
        )
        written = write_outputs(out, best, config.exports)
        final = None
        if config.train_final:
            final = _train_final(config, inputs, settings, outcome, out, ref, progress, log)
            best["final"] = final.to_dict()
            write_outputs(out, best, [])
        return SearchResult(
            config=config,
            outcome=outcome,
            scores=scores,
            runs_trained=trained,
            runs_from_cache=cached,
            tokens=sum(s.tokens() for s in [study, *rung_studies]),
            best=best,
            written=tuple(written),
            seconds=time.perf_counter() - started,
            final=final,
        )


def inputs_fingerprint(inputs: SearchInputs, n_val: int, n_reference: int, settings: TrainSettings) -> str:
    """``study_fingerprint`` of runs on these inputs under ``settings`` (the search's, or a ladder rung's)."""
    return study_fingerprint(
        model=inputs.model,
        data_digest=inputs.data_digest,
        n_train=len(inputs.train),
        n_val=n_val,
        n_reference=n_reference,
        settings=settings,
    )


def _open_study(
    config: SearchConfig, out: Path, storage: Any, fp: str, workers: int = 1, url: str | None = None
) -> SearchStudy:
    """The study in ``out`` (``study.db``; ``study.journal`` for several local workers), or in ``storage``
    (already opened; ``url`` is its URL, for the workers); a folder this call made is removed again when the
    study cannot be opened (another model's study, a broken file). The search's options are bound to it."""
    from loratune.search.pool import open_pooled_study
    from loratune.search.poolstate import bind_options
    from loratune.search.storage import local_storage

    with removed_on_failure(out):
        out.mkdir(parents=True, exist_ok=True)
        sampler = pruner = None
        if config.strategy == "optuna":
            from loratune.search.optuna_strategy import make_sampler_and_pruner

            sampler, pruner = make_sampler_and_pruner(optuna_options(config), min_resource=max(1, config.steps // 2))
        if storage is None:
            storage = url = local_storage(out, workers)  # several local workers share a journal file
        if workers > 1:
            return open_pooled_study(storage, url or str(storage), fp, config, sampler=sampler, pruner=pruner)
        study = SearchStudy(storage, fingerprint=fp, sampler=sampler, pruner=pruner)
        bind_options(study, config)
        return study


def _run_strategy(
    config: SearchConfig, study: SearchStudy, objective: Objective, baseline: Variant, base_lr: float, log: Log
) -> SearchOutcome:
    from loratune.search.baseline import plan_for

    plan = plan_for(baseline, base_lr, config.lr_runs)
    clock = EtaClock()

    def relay(event: SearchEvent) -> None:
        log(event)
        if isinstance(event, RunFinished):
            eta = clock.finished(event)
            if eta is not None:
                log(eta)
            if isinstance(objective, _Tracked):
                objective.runs_left = event.runs_left

    if isinstance(objective, _Tracked):  # the plan's size until the strategy reports its own estimate
        done = sum(1 for r in study.finished() if r.cached_study != "self")
        planned = planned_variants(baseline, staged_options(config)) * expected_runs(config.lr_runs)
        objective.runs_left = max(0, config.trials - done) if config.strategy == "optuna" else planned
    if config.strategy == "staged":
        from loratune.search.staged import StagedSearch

        return StagedSearch(study, objective, plan, staged_options(config), log=relay).run(baseline)
    from loratune.search.optuna_strategy import optuna_search

    return optuna_search(study, objective, plan, optuna_options(config), baseline=baseline, log=relay)


def _climb_ladder(
    config: SearchConfig,
    study: SearchStudy,
    objective: Objective,
    outcome: SearchOutcome,
    inputs: SearchInputs,
    base_lr: float,
    fingerprint_at: Callable[[int], str],
    opened: list[SearchStudy],
    log: Log,
) -> SearchOutcome:
    """Re-run the search's finalists at growing lengths (``search.ladder``), each rung in its own study
    beside ``study`` (appended to ``opened``; with workers, its runs go out to them); the outcome's pick
    becomes the top rung's."""
    from loratune.search.baseline import plan_for
    from loratune.search.ladder import LadderOptions, climb
    from loratune.search.pool import PooledStudy, open_rung_study
    from loratune.search.staged import StageLog

    at_steps = getattr(objective, "at_steps", None)
    if at_steps is None:
        raise ConfigError("this search's objective cannot train at other lengths", "pass finalists=0 (no ladder)")
    scores = [s for s in score_variants(study.finished(), config.metric) if s.best.result is not None]
    finalists, challenger = ladder_climbers(config, scores)
    options = LadderOptions(config.finalists, config.ladder_top(len(inputs.train)), config.cost, config.tolerance,
                            config.max_forgetting, config.metric)  # fmt: skip
    if not finalists:
        return outcome
    storage = study._storage  # the rungs live where the search's study does (one file or server)

    def study_at(steps: int) -> SearchStudy:
        name, fp = f"{study.study.study_name}.rung{steps}", fingerprint_at(steps)
        if isinstance(study, PooledStudy):  # with workers: the rung's runs go out to them
            rung: SearchStudy = open_rung_study(study, name, fp, steps)
        else:
            rung = SearchStudy(storage, fingerprint=fp, name=name)
        opened.append(rung)
        return rung

    def objective_at(steps: int) -> Objective:
        tracked = _Tracked(at_steps(steps), log)
        tracked.runs_left = None
        return tracked

    plan = plan_for(inputs.baseline, base_lr, config.lr_runs)
    ladder = climb(finalists, config.steps, outcome.choice, options, plan, study_at, objective_at, log, challenger)
    if not ladder.rungs:
        return outcome
    top = ladder.rungs[-1]
    with_challenger = f" and the capacity challenger {challenger.variant.label()}" if challenger else ""
    note = (f"{len(finalists)} finalist(s){with_challenger} re-run at " + ", ".join(f"{r.steps}" for r in ladder.rungs)
            + f" steps; knee at {top.steps} steps" + ("" if ladder.ranking_held() else
            f" (the short runs had picked {outcome.choice.chosen.variant.label()})"))  # fmt: skip
    stage = StageLog("ladder", ladder.climbers, ladder.choice.chosen.variant, note)
    return replace(outcome, stages=[*outcome.stages, stage], choice=ladder.choice, ladder=ladder,
                   short_choice=outcome.choice)  # fmt: skip


def ladder_climbers(config: SearchConfig, scores: list[VariantScore]) -> tuple[list[VariantScore], Challenger | None]:
    """The ladder's finalists and its capacity challenger (``search.ladder``), which takes one of the
    ``--finalists`` slots when there are two or more."""
    from loratune.search.ladder import CapacityBounds, capacity_challenger, pick_finalists

    modules = "all-linear" if "all-linear" in config.module_sets else None
    bounds = CapacityBounds(config.max_r, min(staged_options(config).alpha_ratios), modules)
    if config.finalists >= 2:
        fewer = pick_finalists(scores, config.finalists - 1, config.tolerance)
        challenger = capacity_challenger(scores, fewer, bounds)
        if challenger is not None:
            return fewer, challenger
    return pick_finalists(scores, config.finalists, config.tolerance), None


class _Tracked:
    """The objective, announcing each run it trains (cache answers never reach it) with a count."""

    def __init__(self, inner: Objective, log: Log) -> None:
        self.inner, self.log = inner, log
        self.index = 0
        self.runs_left: int | None = None

    def __call__(self, config: RunConfig, on_eval: Any) -> TrialResult:
        self.index += 1
        total = self.index - 1 + self.runs_left if self.runs_left is not None else None
        self.log(RunStarted(config, self.index, total))
        return self.inner(config, on_eval)


def _train_final(
    config: SearchConfig,
    inputs: SearchInputs,
    settings: TrainSettings,
    outcome: SearchOutcome,
    out: Path,
    ref: list[Any],
    progress: bool,
    log: Log,
) -> TrialResult:
    if inputs.runner is None:
        raise ConfigError("--train-final needs the model runner", "call run_search without inputs=")
    final = replace(
        settings,
        learning_rate=outcome.choice.chosen.learning_rate,
        max_steps=config.final_steps,
        epochs=1.0,
        eval_every=None,
    )
    log(FinalTraining(config.final_steps))
    spec = outcome.choice.chosen.variant.adapter_spec(inputs.anatomy.num_layers)
    result: TrialResult = inputs.runner.run(
        spec, final, inputs.train, list(inputs.val)[: config.val_examples], ref, save_dir=out / "adapter",
        progress=progress,
    )  # fmt: skip
    return result


@contextlib.contextmanager
def _optuna_verbosity(quiet: bool) -> Iterator[None]:
    """Optuna logs each created study and trial at INFO; quiet keeps warnings only, for this call."""
    if not quiet:
        yield
        return
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)
