"""The fidelity ladder (search/ladder.py) and the LR sweep that brackets its optimum (search/lr.py): the
rung schedule, who climbs, the pick at the top rung, persistence, resume after kill -9."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from loratune.errors import ConfigError
from loratune.search import SearchConfig, SearchInputs, Variant, run_search
from loratune.search.knee import score_variants
from loratune.search.ladder import CapacityBounds, capacity_challenger, pick_finalists, rung_steps, survivors
from loratune.search.lr import LRPlan, lr_edge, tune_lr
from loratune.search.space import RunConfig

from .synthetic import STEPS, SyntheticObjective, synthetic_loss

DRIVER = Path(__file__).with_name("pool_driver.py")
CONFIG = SearchConfig(model="smollm2-135m", max_r=32, export="none", steps=STEPS)  # finalists=3 by default


@pytest.fixture(scope="module")
def anatomy() -> Any:
    from loratune.models import load_anatomy, resolve_source

    return load_anatomy(resolve_source("smollm2-135m"))  # a skeleton: no weights load


def _inputs(anatomy: Any, n_train: int = 100) -> SearchInputs:
    return SearchInputs(model="smollm2-135m", anatomy=anatomy, train=[[1, 2, 3]] * n_train, val=[[1, 2]] * 8,
                        reference=[], data_digest="synthetic", baseline=Variant(8, 16.0, "attention"),
                        recommended_lr=2e-4)  # fmt: skip


# -- the schedule ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("base", "top", "rungs"),
    [
        (10, 100, [30, 100]),  # 90 would be followed by a 1.1x step to 100: merged into it
        (30, 338, [90, 338]),  # the demo: 30-step runs, one epoch of 1,350 examples at batch 4
        (4, 36, [12, 36]),
        (10, 1000, [30, 90, 270, 1000]),
        (10, 25, [25]),  # not even one 3x step below the top: the top alone
        (10, 10, []),  # nothing longer to run
        (30, 12, []),
    ],
)
def test_rungs_grow_threefold_up_to_the_top(base: int, top: int, rungs: list[int]) -> None:
    assert rung_steps(base, top) == rungs


def test_each_rung_keeps_the_best_third() -> None:
    assert [survivors(n) for n in (1, 2, 3, 5, 6, 9)] == [1, 1, 1, 1, 2, 3]


def test_finalists_are_the_best_few_plus_every_near_one(tmp_path: Path, anatomy: Any) -> None:
    result = run_search(replace(CONFIG, finalists=0), tmp_path, inputs=_inputs(anatomy), objective=SyntheticObjective())
    scores = sorted(result.scores, key=lambda s: s.score)
    assert len(scores) >= 5
    best = scores[0].score
    near = [s.variant for s in scores if s.score <= best * 1.02]  # 2x the 1 % tolerance
    picked = [s.variant for s in pick_finalists(scores, 3, 0.01)]
    assert picked[:3] == [s.variant for s in scores[:3]]
    assert set(picked) == set(picked[:3]) | set(near)
    assert result.choice.chosen.variant in picked  # the short knee is always a finalist
    assert pick_finalists(scores, 0, 0.01) == []


# -- the LR sweep --------------------------------------------------------------------------------------
def _valley(best_lr: float) -> Any:
    tried: list[float] = []

    def loss(lr: float) -> float:
        tried.append(lr)
        return math.log(lr / best_lr) ** 2

    return loss, tried


def test_the_sweep_walks_until_its_best_lr_is_bracketed() -> None:
    plan = LRPlan(base_lr=1e-4, max_runs=8)
    loss, tried = _valley(1.6e-3)  # 16x the center: 4 doublings up
    sweep = tune_lr(loss, plan, 1e-4)
    assert sweep.best_lr == pytest.approx(1.6e-3)
    assert tried == pytest.approx([1e-4, 2e-4, 4e-4, 8e-4, 1.6e-3, 3.2e-3])  # one past the best: bracketed
    assert sweep.edge is None


def test_a_sweep_stopped_by_its_cap_says_so() -> None:
    plan = LRPlan(base_lr=1e-4, max_runs=3)
    loss, tried = _valley(1.6e-3)
    sweep = tune_lr(loss, plan, 1e-4)
    assert len(tried) == 3 and sweep.best_lr == pytest.approx(4e-4)
    assert sweep.edge == "cap"
    bound = LRPlan(base_lr=1e-4, max_runs=8, max_lr=8e-4)
    assert tune_lr(_valley(1.6e-3)[0], bound, 1e-4).edge == "bound"
    assert lr_edge({1e-4: 1.0}, LRPlan(max_runs=1)) is None  # one run per variant: no sweep asked


def test_a_longer_run_tries_the_lower_lr_first() -> None:
    plan = LRPlan(base_lr=1e-4, max_runs=5)
    loss, tried = _valley(2e-4)
    sweep = tune_lr(loss, plan, 4e-4, down_first=True)
    assert tried == pytest.approx([4e-4, 2e-4, 1e-4]) and sweep.best_lr == pytest.approx(2e-4) and sweep.edge is None


def test_a_longer_run_never_walks_above_a_bracketed_shorter_best() -> None:
    plan = LRPlan(base_lr=1e-4, max_runs=5)
    loss, tried = _valley(4e-4)  # the best stayed where the shorter run had it
    sweep = tune_lr(loss, plan, 4e-4, down_first=True, ceiling=4e-4)
    assert tried == pytest.approx([4e-4, 2e-4]) and sweep.best_lr == pytest.approx(4e-4) and sweep.edge is None
    loss, tried = _valley(1.6e-3)  # without the ceiling the walk goes up (the shorter run was capped)
    assert tune_lr(loss, plan, 4e-4, down_first=True).best_lr == pytest.approx(1.6e-3)


# -- the ladder in a search ----------------------------------------------------------------------------
def test_the_finalists_climb_and_the_knee_is_taken_at_the_top_rung(tmp_path: Path, anatomy: Any) -> None:
    obj = SyntheticObjective()
    result = run_search(CONFIG, tmp_path, inputs=_inputs(anatomy, n_train=400), objective=obj)
    ladder = result.outcome.ladder
    top = math.ceil(400 / CONFIG.batch_size)  # one epoch: 100 steps
    assert [r.steps for r in ladder.rungs] == rung_steps(STEPS, top) == [24, 100]
    # the finalists and the capacity challenger run the first rung; each later rung keeps the best third,
    # the rung's knee and the challenger
    assert len(ladder.finalists) == CONFIG.finalists - 1 and ladder.challenger is not None
    assert [s.variant for s in ladder.rungs[0].scores] == [s.variant for s in ladder.finalists] + [ladder.challenger]
    for below, above in zip(ladder.rungs, ladder.rungs[1:], strict=False):
        ranked = sorted(below.scores, key=lambda s: s.score)
        kept = {s.variant for s in ranked[: survivors(len(ranked))]} | {below.choice.chosen.variant}
        assert {s.variant for s in above.scores} == kept | {ladder.challenger}
    # rung runs trained at the rung's length, with the LR re-tuned there until bracketed
    lengths = {steps for steps, _ in obj.ran_at}
    assert lengths == {STEPS, *(r.steps for r in ladder.rungs)}
    for rung in ladder.rungs:
        for s in rung.scores:
            assert rung.edges[s.variant] is None and len(s.runs) >= 2
    # the pick: the top rung's knee, at its LR; best_config.json shows every rung
    top_rung = ladder.rungs[-1]
    assert result.choice.chosen.variant == top_rung.choice.chosen.variant
    best = json.loads((tmp_path / "best_config.json").read_text())
    assert best["training"]["learning_rate"] == pytest.approx(top_rung.choice.chosen.learning_rate)
    assert [r["steps"] for r in best["ladder"]["rungs"]] == [r.steps for r in ladder.rungs]
    assert best["ladder"]["chosen"] == result.choice.chosen.variant.label()
    assert best["stages"][-1]["name"] == "ladder"
    # the ladder's runs count as the search's
    assert result.runs_trained == len(obj.ran_at)
    diverged = [c.learning_rate * c.variant.scaling > 5e-3 for _, c in obj.ran_at]  # 100 tokens each
    assert result.tokens == sum(100 if d else steps * 100 for (steps, _), d in zip(obj.ran_at, diverged, strict=True))
    assert result.outcome.short_choice is not None


def test_at_length_the_synthetic_ranking_changes_and_the_ladder_follows(tmp_path: Path, anatomy: Any) -> None:
    """Higher ranks pay off only in longer runs (synthetic.py): the short runs' knee and the top rung's
    may differ, and the ladder says whether the ranking held."""
    result = run_search(replace(CONFIG, max_final_steps=200), tmp_path, inputs=_inputs(anatomy),
                        objective=SyntheticObjective())  # fmt: skip
    ladder = result.outcome.ladder
    short = result.outcome.short_choice.chosen.variant
    assert ladder.rungs[-1].steps == 200
    # the pick is the top rung's knee, recomputed here from that rung's own scores
    from loratune.search.knee import choose

    top = choose(ladder.rungs[-1].scores, cost=CONFIG.cost, tolerance=CONFIG.tolerance)
    assert result.choice.chosen.variant == top.chosen.variant
    assert ladder.ranking_held() is (top.chosen.variant == short)
    assert result.choice.chosen.variant.r >= short.r  # capacity matters more at length, never less


class RankBlindObjective(SyntheticObjective):
    """Short runs cannot see rank (every rank scores as r=4 would at the same lr·scaling), longer ones can:
    LoRA's curves at tuned LR coincide until the lower rank runs out of capacity (LoRA Without Regret)."""

    def loss(self, config: RunConfig) -> float:
        if self.steps > STEPS:
            return super().loss(config)
        v = config.variant
        return synthetic_loss(replace(config, variant=v.with_(r=4, alpha=4 * v.alpha_ratio)), self.steps)


def test_the_capacity_challenger_widens_the_best_variant_not_already_a_finalist() -> None:
    def score(v: Variant, lr: float = 1e-4) -> Any:
        return score_variants([_record(v, lr)])[0]

    bounds = CapacityBounds(max_r=32, min_alpha_ratio=1.0, widest_modules="all-linear")
    small = score(Variant(4, 8.0, "attention", method="dora"), lr=2e-4)  # at its best LR
    corner = score(Variant(32, 64.0, "all-linear"), lr=2.4e-3)  # 12x too high
    assert small.score < corner.score
    got = capacity_challenger([corner, small], [small, corner], bounds)
    # rank to the space's top, every linear layer, alpha kept but not below alpha/r = 1; the rest kept
    assert got is not None and got.variant == Variant(32, 32.0, "all-linear", method="dora")
    assert got.source == small and got.own is None
    assert capacity_challenger([score(Variant(8, 64.0, "all-linear"))], [], bounds).variant.alpha == 64.0
    # the best one's widening is a finalist already: the next best's is taken; none left: no challenger
    mid = score(Variant(16, 32.0, "all-linear"))
    assert capacity_challenger([corner, mid], [corner], bounds).variant == Variant(32, 32.0, "all-linear")
    assert capacity_challenger([corner], [corner], bounds) is None
    assert capacity_challenger([small], [], replace(bounds, widest_modules=None)).variant.modules == "attention"
    # its first LR keeps lr·alpha: the source's at the same alpha, 1/4 of it when alpha grows 8 → 32 ...
    plan = LRPlan(base_lr=1e-4)
    assert capacity_challenger([mid], [], bounds).first_lr(plan) == pytest.approx(1e-4)
    low_alpha = capacity_challenger([score(Variant(4, 8.0, "all-linear"))], [], bounds)
    assert low_alpha.first_lr(plan) == pytest.approx(2.5e-5)
    # ... unless the search ran the challenger itself: then its own best LR
    own = score(Variant(32, 32.0, "all-linear"), lr=4e-4)
    got = capacity_challenger([mid, own], [mid], bounds)
    assert got.variant == own.variant and got.own == own and got.first_lr(plan) == pytest.approx(4e-4)


def _record(v: Variant, lr: float) -> Any:
    from loratune.search.study import TrialRecord

    result = SyntheticObjective()(RunConfig(v, lr), None)
    return TrialRecord(number=0, state="COMPLETE", key=None, variant=v, learning_rate=lr, stage="s", result=result)


def test_when_short_runs_cannot_see_rank_the_challenger_climbs_and_wins_at_length(tmp_path: Path, anatomy: Any) -> None:
    obj = RankBlindObjective()
    result = run_search(replace(CONFIG, max_final_steps=200), tmp_path, inputs=_inputs(anatomy), objective=obj)
    ladder, short = result.outcome.ladder, result.outcome.short_choice.chosen.variant
    assert short.r < 32  # the short runs saw no reason to double the rank
    source = ladder.finalists[0].variant
    assert ladder.challenger == source.with_(r=32, alpha=max(source.alpha, 32.0), modules="all-linear")
    assert len(ladder.finalists) >= CONFIG.finalists - 1  # it took one of the --finalists slots
    # it ran no short run, joined at the first rung and climbed every rung, whatever its place there
    assert all(c.variant != ladder.challenger for steps, c in obj.ran_at if steps == STEPS)
    for rung in ladder.rungs:
        assert ladder.challenger in {s.variant for s in rung.scores}
    # at length its capacity pays: the top rung's knee is the challenger; the record names it
    assert result.choice.chosen.variant == ladder.challenger
    best = json.loads((tmp_path / "best_config.json").read_text())
    assert best["ladder"]["challenger"] == ladder.challenger.label()


def test_a_second_call_answers_every_rung_from_the_study(tmp_path: Path, anatomy: Any) -> None:
    first = run_search(CONFIG, tmp_path, inputs=_inputs(anatomy), objective=SyntheticObjective())
    again = SyntheticObjective()
    second = run_search(CONFIG, tmp_path, inputs=_inputs(anatomy), objective=again)
    assert again.ran_at == []
    assert second.choice.chosen.variant == first.choice.chosen.variant
    assert second.choice.chosen.learning_rate == first.choice.chosen.learning_rate


def test_no_finalists_no_ladder(tmp_path: Path, anatomy: Any) -> None:
    obj = SyntheticObjective()
    result = run_search(replace(CONFIG, finalists=0), tmp_path, inputs=_inputs(anatomy), objective=obj)
    assert result.outcome.ladder is None and {steps for steps, _ in obj.ran_at} == {STEPS}
    assert "ladder" not in json.loads((tmp_path / "best_config.json").read_text())


def test_finalists_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match="--finalists must be >= 0, got -1"):
        SearchConfig(model="m", finalists=-1)
    assert SearchConfig.from_dict({"model": "m", "finalists": 2, "max_final_steps": 90}).finalists == 2


def test_kill9_during_a_rung_then_resume_reruns_nothing_finished(tmp_path: Path, anatomy: Any) -> None:
    ranlog, out = tmp_path / "ran.log", tmp_path / "out"
    env = {**os.environ, "LORATUNE_THREADS": "1", "PYTHONWARNINGS": "ignore", "LORATUNE_TEST_RANLOG": str(ranlog),
           "LORATUNE_TEST_SLEEP": "0.02"}  # fmt: skip

    def driver() -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, str(DRIVER), str(out), "-", "1", "ladder"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip

    def runs() -> list[str]:
        return ranlog.read_text().splitlines() if ranlog.is_file() else []

    proc = driver()
    deadline = time.monotonic() + 120
    # kill once the second ladder run has begun (rung runs log their steps, 3rd field, > STEPS)
    while sum(int(line.split("|")[2]) > STEPS for line in runs()) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = runs()
    again = driver()
    _out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err[-2000:]
    after = runs()[len(before) :]
    # only the run the kill interrupted (the last begun) may begin again; nothing finished reruns
    keys = [line.rsplit("|", 1)[0] for line in before]
    assert not set(keys[:-1]) & {line.rsplit("|", 1)[0] for line in after}
    # and the pick is that of a search never killed
    whole = run_search(SearchConfig(model="smollm2-135m", max_r=32, export="none"), tmp_path / "whole",
                       inputs=_inputs(anatomy), objective=SyntheticObjective())  # fmt: skip
    best = json.loads((out / "best_config.json").read_text())
    assert best["chosen"]["variant"] == whole.best["chosen"]["variant"]
    assert best["ladder"]["rungs"] == whole.best["ladder"]["rungs"]
