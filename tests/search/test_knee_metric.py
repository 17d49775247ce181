"""The knee and the staged stages on a classifier's metric (``--metric accuracy|f1``): higher is better,
and "within the tolerance" / "a doubling must gain" stay relative, as for perplexity. No training."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from loratune.errors import ConfigError
from loratune.search import (
    LRPlan,
    RunConfig,
    SearchStudy,
    StagedOptions,
    StagedSearch,
    Variant,
    choose,
    default_storage,
    score_variants,
)
from loratune.search.metric import metric_score, metric_value
from loratune.trial.types import TrialResult

# Accuracy saturates at r=8 while the loss keeps falling: the two metrics pick different knees.
ACC = {1: 0.80, 2: 0.88, 4: 0.895, 8: 0.90, 16: 0.90, 32: 0.90}


class ClsObjective:
    def __init__(self) -> None:
        self.ran: list[RunConfig] = []

    def __call__(self, config: RunConfig, on_eval: Callable[[int, float], bool] | None) -> TrialResult:
        self.ran.append(config)
        v = config.variant
        lr_penalty = 0.05 * abs(math.log(config.learning_rate / 4e-4))  # best at 4e-4
        loss = 0.5 - 0.02 * math.log2(v.r) + lr_penalty
        acc = ACC[v.r] - lr_penalty
        return TrialResult(
            status="ok",
            val_loss_before=0.69,
            val_loss_after=loss,
            val_accuracy_before=0.5,
            val_accuracy_after=acc,
            val_f1_before=0.4,
            val_f1_after=acc - 0.01,
            trainable_params=1000 * v.r,
            train_tokens=100,
            tokens_per_second=100.0,
        )


def _scores(tmp_path, metric: str):
    study = SearchStudy(default_storage(tmp_path), fingerprint="fp")
    obj = ClsObjective()
    for r in (1, 2, 4, 8, 16):
        for lr in (2e-4, 4e-4):
            study.run(RunConfig(Variant(r, 2.0 * r, "attention"), lr), obj)
    return score_variants(study.finished(), metric)


def test_knee_on_accuracy_is_higher_better_and_relative(tmp_path) -> None:
    scores = _scores(tmp_path, "accuracy")
    assert all(s.learning_rate == 4e-4 for s in scores)  # best LR by accuracy
    assert scores[0].value == pytest.approx(0.90) and scores[0].variant.r == 8  # ties at 0.90: r=8 ranks first
    # best 0.90 (r=8 and r=16: the cheaper is "best"); within 1 %: accuracy ≥ 0.90 / 1.01 = 0.891 → r=4 (0.895)
    c = choose(scores, tolerance=0.01)
    assert c.best.variant.r == 8 and c.chosen.variant.r == 4
    assert "within 1.0% of the best validation accuracy (0.9000" in c.reason()
    assert choose(scores, tolerance=0.0).chosen.variant.r == 8
    assert choose(scores, tolerance=0.15).chosen.variant.r == 1  # 0.80 ≥ 0.90 / 1.15
    d = c.to_dict()
    assert d["metric"] == "accuracy" and d["chosen"]["accuracy"] == pytest.approx(0.895)


def test_knee_on_loss_picks_differently(tmp_path) -> None:
    scores = _scores(tmp_path, "loss")
    # perplexity keeps falling with r: each doubling is exp(0.02) - 1 = 2 % > 1 %: the largest rank wins
    assert choose(scores, tolerance=0.01).chosen.variant.r == 16
    assert choose(_scores(tmp_path / "f1", "f1"), tolerance=0.01).chosen.variant.r == 4


def test_staged_rank_stage_climbs_on_accuracy(tmp_path) -> None:
    study = SearchStudy(default_storage(tmp_path), fingerprint="fp")
    opt = StagedOptions(max_r=32, module_sets=("attention",), metric="accuracy", alpha_ratios=(2.0,))
    out = StagedSearch(study, ClsObjective(), LRPlan(base_lr=4e-4, base_scaling=2.0), opt).run(Variant(2, 4.0))
    rank = out.stages[1]
    # 2 → 4 gains 1.7 % accuracy (pays at 1 %), 4 → 8 gains 0.56 % (does not): the rank stage stops at 4
    assert [v.r for v in rank.tried] == [2, 4, 8] and rank.winner.r == 4
    assert out.choice.chosen.variant.r == 4 and out.choice.chosen.metric == "accuracy"


def test_metric_helpers_and_validation() -> None:
    ok = TrialResult(val_loss_after=math.log(2.0), val_accuracy_after=0.8, val_f1_after=0.5)
    assert metric_value(ok, "loss") == pytest.approx(2.0) and metric_score(ok, "accuracy") == pytest.approx(1.25)
    assert metric_score(TrialResult(status="diverged"), "f1") == math.inf
    assert metric_score(TrialResult(val_accuracy_after=0.0), "accuracy") == 1e6  # worst, yet ranked
    from loratune.search.config import SearchConfig

    with pytest.raises(ConfigError, match="unknown metric"):
        SearchConfig(model="x", metric="auc")
    with pytest.raises(ConfigError, match="needs a classifier"):
        SearchConfig(model="x", metric="accuracy", task_type="causal-lm")
