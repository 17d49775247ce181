"""``run_search`` as a library call (synthetic objective: no training), its config and its events."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from loratune.errors import ConfigError
from loratune.search import SearchConfig, SearchInputs, SearchResult, SearchStudy, Variant, default_storage, run_search
from loratune.search import events as ev
from loratune.search.saved import read_search_json
from loratune.search.timebudget import Throughput, fit_to_budget, planned_runs, pool_speedup, run_seconds, size
from loratune.trial.types import TrialResult

from .synthetic import SyntheticObjective


@pytest.fixture(scope="module")
def anatomy():  # type: ignore[no-untyped-def]
    from loratune.models import load_anatomy, resolve_source

    return load_anatomy(resolve_source("smollm2-135m"))  # a skeleton: no weights load


def _inputs(anatomy, n_train: int = 100) -> SearchInputs:  # type: ignore[no-untyped-def]
    return SearchInputs(
        model="smollm2-135m",
        anatomy=anatomy,
        train=[[1, 2, 3]] * n_train,
        val=[[1, 2]] * 8,
        reference=[],
        data_digest="synthetic",
        baseline=Variant(8, 16.0, "attention"),
        recommended_lr=2e-4,
    )


# The search without its fidelity ladder (tests/search/test_ladder.py covers that part).
CONFIG = SearchConfig(model="smollm2-135m", max_r=32, export="none", finalists=0)


# -- SearchConfig ----------------------------------------------------------------------------------
def test_config_validates_once_naming_option_and_value() -> None:
    cases = [
        ({"cost": "flops"}, "unknown cost 'flops'"),
        ({"strategy": "grid"}, "unknown strategy 'grid'"),
        ({"pruner": "median"}, "unknown pruner 'median'"),
        ({"steps": 0}, "--steps must be >= 1, got 0"),
        ({"val_examples": -1}, "--val-examples must be >= 1, got -1"),
        ({"tolerance": 1.5}, r"--tolerance must be in \[0, 1\), got 1.5"),
        ({"max_forgetting": -0.1}, "--max-forgetting must be >= 0, got -0.1"),
        ({"max_forgetting": 0.05, "reference": "none"}, "--max-forgetting needs reference text"),
        ({"threads": 0}, "--threads must be >= 1, got 0"),
        ({"time_budget": 0.0}, "--time-budget must be positive"),
        ({"modules": " , "}, "no module sets given"),
        ({"steps": "10"}, "steps must be int, got str"),
        ({"try_dora": 1}, "try_dora must be bool"),
    ]
    for changes, message in cases:
        with pytest.raises(ConfigError, match=message):
            SearchConfig(model="m", **changes)  # type: ignore[arg-type]
    # reference defaults to the demo text exactly when forgetting is limited
    assert SearchConfig(model="m").reference == "none"
    assert SearchConfig(model="m", max_forgetting=0.05).reference == "demo"


def test_config_json_round_trip_and_refusals() -> None:
    config = SearchConfig(model="m", val_data="v.jsonl", lr=1e-3, max_forgetting=0.05, threads=2, tolerance=0.02)
    text = json.dumps(config.to_dict())
    assert SearchConfig.from_dict(json.loads(text)) == config
    data = config.to_dict()
    with pytest.raises(ConfigError, match=r"search.json: unknown option\(s\) storage_url"):
        SearchConfig.from_dict({**data, "storage_url": "sqlite:////etc/x.db"})
    with pytest.raises(ConfigError, match="search.json: option steps must be int, got str"):
        SearchConfig.from_dict({**data, "steps": "10"})
    with pytest.raises(ConfigError, match="search.json: option lr must be float or null"):
        SearchConfig.from_dict({**data, "lr": [1]})
    with pytest.raises(ConfigError, match="search.json: unknown cost"):
        SearchConfig.from_dict({**data, "cost": "flops"})
    with pytest.raises(ConfigError, match="must be a JSON object"):
        SearchConfig.from_dict([1, 2])
    # an integer where a float is expected is a float (JSON written by hand)
    assert SearchConfig.from_dict({"model": "m", "tolerance": 0}).tolerance == 0


def test_fingerprint_is_one_function_of_model_data_settings_and_code() -> None:
    from loratune.search import study_fingerprint, trial_code_hash

    settings = CONFIG.train_settings(2e-4, "bf16")
    kw = {"model": "m", "data_digest": "d", "n_train": 10, "n_val": 4, "n_reference": 0, "settings": settings}
    fp = study_fingerprint(**kw)
    assert fp == study_fingerprint(**kw, code=trial_code_hash())  # the trial code hash is part of it
    assert fp != study_fingerprint(**kw, code="other")
    assert fp != study_fingerprint(**{**kw, "data_digest": "d+v"})  # --val-data changes the study
    # the LR is a run's, not the study's; eval_every only reports
    assert fp == study_fingerprint(**{**kw, "settings": replace(settings, learning_rate=1e-3, eval_every=2)})


# -- run_search --------------------------------------------------------------------------------------
def test_run_search_as_a_library_returns_the_typed_result_and_events(tmp_path: Path, anatomy) -> None:  # type: ignore[no-untyped-def]
    obj = SyntheticObjective()
    seen: list[ev.SearchEvent] = []
    result = run_search(CONFIG, tmp_path, log=seen.append, inputs=_inputs(anatomy), objective=obj)
    assert isinstance(result, SearchResult)
    assert result.outcome.strategy == "staged" and result.choice.chosen.variant.modules == "all-linear"
    assert result.runs_trained == len(obj.ran) and result.tokens == len(obj.ran) * 800
    assert {s.variant for s in result.scores} >= {result.choice.chosen.variant}
    assert sum(s.runs_trained for s in result.scores) == result.runs_trained
    assert result.best["search"]["runs_trained"] == result.runs_trained
    assert [p.name for p in result.written] == ["best_config.json"]
    saved = read_search_json(tmp_path / "search.json")
    assert saved.config == CONFIG and not saved.custom_storage
    # typed events, in order; nothing to parse
    kinds = [type(e) for e in seen]
    assert kinds[0] is ev.SearchStarted
    stages = [e.name for e in seen if isinstance(e, ev.StageStarted)]
    assert stages[:4] == ["baseline", "rank", "alpha", "modules"]
    started = [e for e in seen if isinstance(e, ev.RunStarted)]
    assert [e.index for e in started] == list(range(1, len(obj.ran) + 1))
    assert [e.config for e in started] == obj.ran
    finished = [e for e in seen if isinstance(e, ev.RunFinished)]
    assert all(e.trained for e in finished[: len(obj.ran)]) or len(finished) >= len(obj.ran)
    etas = [e for e in seen if isinstance(e, ev.EtaUpdate)]
    assert len(etas) == len(obj.ran) and etas[0].runs_done == 1 and etas[-1].runs_done == len(obj.ran)
    assert all(e.runs_left >= 0 and e.seconds_left >= 0 for e in etas)
    assert started[1].total_estimate is not None and started[1].total_estimate >= 2
    scored = [e for e in seen if isinstance(e, ev.VariantScored)]
    assert scored and all(e.ppl is not None and math.isfinite(e.ppl) for e in scored)
    assert all(hasattr(type(e), "kind") for e in seen)


def test_runs_column_counts_trained_runs_after_a_resume(tmp_path: Path, anatomy) -> None:  # type: ignore[no-untyped-def]
    first = run_search(CONFIG, tmp_path, inputs=_inputs(anatomy), objective=SyntheticObjective())
    again_obj = SyntheticObjective()
    again = run_search(CONFIG, tmp_path, inputs=_inputs(anatomy), objective=again_obj)
    assert again_obj.ran == []  # everything answered from the study
    assert again.runs_trained == first.runs_trained and again.runs_from_cache >= first.runs_trained
    per_variant = {s.variant: s.runs_trained for s in first.scores}
    assert {s.variant: s.runs_trained for s in again.scores} == per_variant  # not 2× (cache answers)
    assert any(len(s.runs) > s.runs_trained for s in again.scores)
    assert again.best["search"]["runs_trained"] == first.runs_trained
    assert again.best["search"]["runs_answered_from_cache"] == again.runs_from_cache
    # the CLI prints exactly these counts in its table
    from loratune.cli.common import console
    from loratune.cli.search_cmd import print_result

    with console.capture() as cap:
        print_result(again, tmp_path)
    text = cap.get()
    assert f"{again.runs_trained} run(s) trained, {again.runs_from_cache} answered from the cache" in text
    chosen_row = next(line for line in text.splitlines() if "◀ chosen" in line)
    assert chosen_row.rstrip(" │|").split()[-1] == str(again.choice.chosen.runs_trained)


def test_another_config_in_the_same_folder_is_refused(tmp_path: Path, anatomy) -> None:  # type: ignore[no-untyped-def]
    run_search(CONFIG, tmp_path, inputs=_inputs(anatomy), objective=SyntheticObjective())
    with pytest.raises(ConfigError, match="another model, data or training settings"):
        run_search(replace(CONFIG, steps=11), tmp_path, inputs=_inputs(anatomy), objective=SyntheticObjective())


class FailsAtRank16(SyntheticObjective):
    """Every run of rank 16 fails (as a config PEFT refuses would)."""

    def __call__(self, config, on_eval):  # type: ignore[no-untyped-def]
        if config.variant.r == 16:
            self.ran.append(config)
            return TrialResult(status="failed", message="refused")
        return super().__call__(config, on_eval)


def test_a_variant_whose_every_run_failed_is_remembered(tmp_path: Path, anatomy) -> None:  # type: ignore[no-untyped-def]
    obj = FailsAtRank16()
    seen: list[ev.SearchEvent] = []
    run_search(CONFIG, tmp_path, log=seen.append, inputs=_inputs(anatomy), objective=obj)
    failed = [c for c in obj.ran if c.variant.r == 16]
    assert failed and len(failed) == len(set(failed))  # each failing config trained once
    # the rank stage asks for r=16 again when it picks its winner: the memo answers, not the study
    study = SearchStudy(default_storage(tmp_path), fingerprint="")
    r16 = [r for r in study.records() if r.variant is not None and r.variant.r == 16]
    assert len(r16) == len(failed)
    assert [e.variant.r for e in seen if isinstance(e, ev.VariantScored) and e.ppl is None] == [16]


def test_optuna_strategy_through_run_search(tmp_path: Path, anatomy) -> None:  # type: ignore[no-untyped-def]
    config = replace(CONFIG, strategy="optuna", trials=6)
    seen: list[ev.SearchEvent] = []
    result = run_search(config, tmp_path, log=seen.append, inputs=_inputs(anatomy), objective=SyntheticObjective())
    assert result.outcome.strategy == "optuna"
    finished = [e for e in seen if isinstance(e, ev.RunFinished)]
    assert finished[-1].runs_left == 0 and sum(1 for e in finished if e.record.cached_study != "self") == 6


# -- time budget -------------------------------------------------------------------------------------
def test_time_budget_sizing_gives_up_knobs_in_order_and_never_raises_them() -> None:
    demo = SearchConfig(model="m", steps=30, val_examples=64, lr_runs=2, max_r=32)
    fast = Throughput(seconds_per_step=1.0, seconds_per_eval_example=0.1, overhead_seconds=1.0)
    per_run = run_seconds(fast, demo, 0)
    assert per_run == pytest.approx(1 + 30 + 2 * 64 * 0.1)
    roomy = size(demo, fast, 1e6, variants=6, n_reference=0)
    assert roomy.config == demo and roomy.planned_runs == 12  # fits: nothing changes
    budget = 12 * per_run  # the fast machine's whole demo
    # 1.5× slower: fewer steps are enough
    sized = size(demo, Throughput(1.5, 0.15, 1.5), budget, variants=6, n_reference=0)
    assert (sized.config.steps, sized.config.val_examples, sized.config.lr_runs) == (15, 64, 2)
    assert sized.estimated_seconds <= budget
    # 4× slower (fp32 where bf16 is not native): validation down to 16, then one LR run per variant
    sized = size(demo, Throughput(4.0, 0.4, 4.0), budget, variants=6, n_reference=0)
    assert (sized.config.steps, sized.config.val_examples, sized.config.lr_runs) == (17, 16, 1)
    assert sized.estimated_seconds <= budget
    # far too slow: the LR sweep goes, then steps to the floor
    tiny = size(demo, Throughput(40.0, 4.0, 40.0), budget, variants=6, n_reference=0).config
    assert tiny.lr_runs == 1 and tiny.steps < 10 and tiny.val_examples <= 16
    assert planned_runs(replace(demo, strategy="optuna", trials=7), 6) == 7


def test_time_budget_gives_the_ladder_half_and_lowers_its_top_rung_to_fit() -> None:
    from loratune.search.timebudget import ladder_seconds

    demo = SearchConfig(model="m", steps=30, val_examples=64, lr_runs=5, max_r=32)  # finalists 3
    fast = Throughput(seconds_per_step=0.3, seconds_per_eval_example=0.03, overhead_seconds=1.0)
    # the ladder's estimate: 3 climbers + 2 near ones x 3 runs at 90 steps, then the best and the capacity
    # challenger x 3 at the top (338)
    per = lambda steps: 1.0 + 2 * 64 * 0.03 + steps * 0.3  # noqa: E731
    assert ladder_seconds(fast, demo, 338, 0) == pytest.approx(15 * per(90) + 6 * per(338))
    roomy = size(demo, fast, 1e6, variants=6, n_reference=0, n_train=1350)
    assert roomy.config.max_final_steps == 338 and roomy.config.steps == 30  # one epoch, nothing trimmed
    budget = 12 * 60.0
    sized = size(demo, fast, budget, variants=6, n_reference=0, n_train=1350)
    search_only = size(demo, fast, budget / 2, variants=6, n_reference=0)
    assert sized.config.steps == search_only.config.steps  # the search fits half the budget
    assert 30 < sized.config.max_final_steps < 338 and sized.estimated_seconds <= budget
    # a tight budget: the search shrinks to half of it, the ladder to a short top rung that fits the rest
    tight = size(demo, fast, 200.0, variants=6, n_reference=0, n_train=1350)
    assert tight.config.steps < tight.config.max_final_steps < 3 * tight.config.steps
    assert tight.estimated_seconds <= 200.0
    # one that cannot hold even a rung: no ladder (the top rung is the search's own length)
    starved = size(demo, Throughput(30.0, 3.0, 10.0), 200.0, variants=6, n_reference=0, n_train=1350).config
    assert starved.max_final_steps == starved.steps


def test_time_budget_with_workers_counts_each_added_worker_as_0_4_of_one() -> None:
    demo = SearchConfig(model="m", steps=30, val_examples=64, lr_runs=2, max_r=32)
    slow = Throughput(4.0, 0.4, 4.0)
    budget = 12 * run_seconds(Throughput(1.0, 0.1, 1.0), demo, 0)  # the demo on a 4x faster machine
    assert (pool_speedup(1), pool_speedup(2), pool_speedup(4)) == (1.0, 1.4, pytest.approx(2.2))
    alone = size(demo, slow, budget, variants=6, n_reference=0)
    two = size(demo, slow, budget, variants=6, n_reference=0, workers=2)
    serial = size(demo, slow, budget * 1.4, variants=6, n_reference=0)
    assert two.config == serial.config  # 1.4x the serial seconds ...
    assert two.estimated_seconds == pytest.approx(serial.estimated_seconds / 1.4)  # ... in wall time
    assert two.estimated_seconds <= budget
    # a bigger search in the same wall time: alone it gives up the LR sweep, with two workers it keeps it
    assert (alone.config.lr_runs, alone.planned_runs) == (1, 6) and (two.config.lr_runs, two.planned_runs) == (2, 12)
    # the ladder's half grows the same way
    ladder = replace(demo, finalists=3, lr_runs=5)
    one_l = size(ladder, slow, budget, variants=6, n_reference=0, n_train=1350)
    two_l = size(ladder, slow, budget, variants=6, n_reference=0, n_train=1350, workers=2)
    assert two_l.config.max_final_steps > one_l.config.max_final_steps and two_l.estimated_seconds <= budget


class ThreadedProbeRunner:
    """A probe runner that records the threads it was timed with."""

    def __init__(self) -> None:
        self.threads: int | None = None
        self.timed_with: list[int | None] = []

    def run(self, spec, settings, train, val, reference, **kw):  # type: ignore[no-untyped-def]
        self.timed_with.append(self.threads)
        timed = {"train_seconds": 2.0, "eval_seconds": 0.5}
        return TrialResult(steps=settings.max_steps, wall_seconds=3.0, extra=timed)


def test_time_budget_with_workers_probes_at_one_workers_threads(anatomy) -> None:  # type: ignore[no-untyped-def]
    inputs = _inputs(anatomy)
    inputs.runner = ThreadedProbeRunner()
    config = replace(CONFIG, steps=30, val_examples=8, time_budget=5.0, threads=6)
    _, record = fit_to_budget(config, inputs, lambda e: None, 0.0, workers=3)
    assert inputs.runner.timed_with == [6] and inputs.runner.threads is None  # --threads is each worker's
    assert record["workers"] == 3
    _, record = fit_to_budget(replace(config, threads=None), inputs, lambda e: None, 0.0, workers=1)
    assert inputs.runner.timed_with == [6, None] and record["workers"] == 1  # one worker: untouched


def test_legacy_records_keep_their_estimate_and_warnings() -> None:
    old = TrialResult(status="ok", extra={"estimated_memory_bytes": 123, "warnings": ["w"], "threads": 1}).to_dict()
    old.pop("estimated_memory_bytes")
    old.pop("warnings")
    r = TrialResult.from_dict(old)
    assert r.estimated_memory_bytes == 123 and r.warnings == ["w"] and r.extra == {"threads": 1}
    assert TrialResult.from_dict(r.to_dict()) == r


class ProbeRunner:
    """Stands in for TrialRunner in the time-budget probe: 2 s per step, 0.5 s per evaluated example."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def run(self, spec, settings, train, val, reference, **kw):  # type: ignore[no-untyped-def]
        self.calls.append((settings.max_steps, len(val)))
        steps, evals = settings.max_steps, 2 * len(val)
        return TrialResult(
            steps=steps,
            wall_seconds=2.0 * steps + 0.5 * evals + 1.0,
            extra={"train_seconds": 2.0 * steps, "eval_seconds": 0.5 * evals},
        )


def test_time_budget_probes_then_runs_and_saves_the_sized_options(tmp_path: Path, anatomy) -> None:  # type: ignore[no-untyped-def]
    inputs = _inputs(anatomy)
    inputs.runner = ProbeRunner()
    inputs.val = [[1, 2]] * 64
    config = replace(CONFIG, steps=30, val_examples=64, time_budget=5.0)
    seen: list[ev.SearchEvent] = []
    result = run_search(config, tmp_path, log=seen.append, inputs=inputs, objective=SyntheticObjective())
    assert inputs.runner.calls == [(3, 8)]  # one short probe, never recorded in the study
    sized = next(e for e in seen if isinstance(e, ev.BudgetSized))
    assert sized.seconds_per_step == pytest.approx(2.0) and sized.seconds_per_eval_example == pytest.approx(0.5)
    assert sized.estimated_seconds <= 5 * 60
    assert (result.config.steps, result.config.val_examples) == (sized.steps, sized.val_examples)
    assert result.config.steps < 30 and result.config.time_budget is None
    saved = read_search_json(tmp_path / "search.json")
    assert saved.config == result.config  # a resume runs the sized options, with no second probe
    assert saved.sized_by_budget is not None and saved.sized_by_budget["asked"]["steps"] == 30
    started = next(e for e in seen if isinstance(e, ev.SearchStarted))
    assert started.steps == result.config.steps and started.n_val == result.config.val_examples
