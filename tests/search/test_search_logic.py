"""Strategies, cache, knee and LR tuning against the synthetic objective (no training)."""

from __future__ import annotations

import math

import pytest

from loratune.errors import ConfigError
from loratune.search import (
    LRPlan,
    OptunaOptions,
    RunConfig,
    SearchStudy,
    StagedOptions,
    StagedSearch,
    Variant,
    choose,
    default_storage,
    optuna_search,
    pareto_front,
    score_variants,
    tune_lr,
)
from loratune.search.optuna_strategy import make_sampler_and_pruner

from .synthetic import STEPS, TOKENS_PER_STEP, SyntheticObjective, synthetic_loss


def test_lr_center_keeps_lr_times_scaling() -> None:
    plan = LRPlan(base_lr=2e-4, base_scaling=2.0)
    assert plan.center(Variant(8, 16.0)) == 2e-4  # scaling 2 → the base LR
    assert plan.center(Variant(8, 8.0)) == 4e-4  # scaling 1 → twice the LR
    assert plan.center(Variant(16, 64.0)) == 1e-4  # scaling 4 → half
    assert plan.snap(2.7e-4) == 2e-4 and plan.snap(2.9e-4) == 4e-4  # log midpoint is 2.83e-4


def test_tune_lr_walks_towards_the_optimum() -> None:
    calls = []

    def loss(lr: float) -> float:
        calls.append(lr)
        return (math.log(lr) - math.log(1.6e-3)) ** 2

    sweep = tune_lr(loss, LRPlan(base_lr=2e-4, max_runs=3), 2e-4)
    assert calls == [2e-4, 4e-4, 8e-4]  # up pays, so it keeps going up
    assert sweep.best_lr == 8e-4
    down = tune_lr(lambda lr: (math.log(lr) - math.log(5e-5)) ** 2, LRPlan(base_lr=2e-4, max_runs=3), 2e-4)
    assert sorted(down.tried) == [1e-4, 2e-4, 4e-4] and down.best_lr == 1e-4
    assert list(tune_lr(loss, LRPlan(max_runs=1), 2e-4).tried) == [2e-4]


def test_identical_configs_never_train_twice(tmp_path) -> None:
    obj = SyntheticObjective()
    study = SearchStudy(default_storage(tmp_path), fingerprint="fp")
    cfg = RunConfig(Variant(8, 16.0), 2e-4)
    first = study.run(cfg, obj)
    again = study.run(RunConfig(Variant(8, 16.0), 2e-4, stage="other"), obj)
    assert len(obj.ran) == 1
    assert again.cached_from == first.number and again.result.val_loss_after == first.result.val_loss_after
    assert study.tokens() == STEPS * TOKENS_PER_STEP  # the repeat costs nothing
    # another fingerprint (other data/settings) is another key
    assert cfg.key("fp") != cfg.key("fp2")
    # a reopened study answers from storage, not by training
    reopened = SearchStudy(default_storage(tmp_path), fingerprint="fp")
    reopened.run(cfg, obj)
    assert len(obj.ran) == 1


def test_study_refuses_other_settings(tmp_path) -> None:
    SearchStudy(default_storage(tmp_path), fingerprint="a")
    with pytest.raises(ConfigError, match="another model, data or training settings"):
        SearchStudy(default_storage(tmp_path), fingerprint="b")


def test_staged_follows_the_seed_order_and_picks_the_knee(tmp_path) -> None:
    obj = SyntheticObjective()
    study = SearchStudy(default_storage(tmp_path), fingerprint="fp")
    out = StagedSearch(study, obj, LRPlan(), StagedOptions(max_r=32)).run(Variant(8, 16.0))
    names = [s.name for s in out.stages]
    assert names[:4] == ["baseline", "rank", "alpha", "modules"] and names[-1] == "final"
    rank = out.stages[1]
    # synthetic gains: 8→16 is 7.5 %, 16→32 is 2.6 % (both pay at 1 %), capped at max_r=32
    assert [v.r for v in rank.tried] == [8, 16, 32] and rank.winner.r == 32
    alpha = out.stages[2]
    assert sorted(v.alpha for v in alpha.tried) == [32.0, 64.0, 128.0]
    assert out.choice.chosen.variant.modules == "all-linear"
    # the pick is the best of everything seen (synthetic alpha is LR-equivalent, so the cheapest wins ties)
    best = min(synthetic_loss(c) for c in obj.ran)
    assert math.isclose(math.log(out.choice.best.ppl), best)
    # a fraction of the 30-variant grid, each with a ≤3-run LR sweep
    assert len(obj.ran) <= 24


class FifoPooledStudy(SearchStudy):
    """A study that hands runs out like the workers' (``submit``, ``first_finished``) and finishes them in
    the order they were handed out, one at a time; ``finished_order`` is that order."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.handed_out: list[RunConfig] = []
        self.finished_order: list[RunConfig] = []

    def submit(self, config: RunConfig) -> None:
        if config not in self.handed_out:
            self.handed_out.append(config)

    def first_finished(self, configs: list[RunConfig], objective) -> RunConfig:  # type: ignore[no-untyped-def]
        first = min(configs, key=self.handed_out.index)
        self.finished_order.append(first)
        return first


def test_a_stages_sweeps_walk_side_by_side_with_workers_and_decide_as_alone(tmp_path) -> None:
    alone = StagedSearch(SearchStudy(default_storage(tmp_path / "a"), fingerprint="fp"), SyntheticObjective(),
                         LRPlan(), StagedOptions(max_r=32)).run(Variant(8, 16.0))  # fmt: skip
    pooled = FifoPooledStudy(default_storage(tmp_path / "b"), fingerprint="fp")
    together = StagedSearch(pooled, SyntheticObjective(), LRPlan(), StagedOptions(max_r=32)).run(Variant(8, 16.0))
    # the same stages, variants, winners, scores and LRs: each sweep saw only its own runs
    assert [(s.name, s.tried, s.winner) for s in together.stages] == [(s.name, s.tried, s.winner) for s in alone.stages]
    assert together.choice.chosen.variant == alone.choice.chosen.variant
    assert together.choice.chosen.learning_rate == alone.choice.chosen.learning_rate
    assert sorted(r.key for r in pooled.finished()) == sorted(
        r.key for r in SearchStudy(default_storage(tmp_path / "a"), fingerprint="fp").finished()
    )
    # ... but not one after another: in the alpha stage a variant's later runs were handed out while another
    # variant's sweep was still walking (alone, each variant's runs come as one block)
    alpha = [c.variant for c in pooled.finished_order if c.stage == "alpha"]
    blocks = [v for i, v in enumerate(alpha) if i == 0 or alpha[i - 1] != v]
    assert len(set(alpha)) == 2 and len(blocks) > 2, alpha


def test_knee_prefers_cheaper_within_tolerance_and_respects_forgetting(tmp_path) -> None:
    obj = SyntheticObjective()
    study = SearchStudy(default_storage(tmp_path), fingerprint="fp")
    for r in (4, 8, 16, 32):
        study.run(RunConfig(Variant(r, 2.0 * r, "all-linear"), 2e-4), obj)
    scores = score_variants(study.finished())
    ppl = {s.variant.r: s.ppl for s in scores}
    # ppl(16) is 4.0 % above ppl(32) (exp(0.6·(e^-16/6 - e^-32/6)) - 1): 1 % keeps r=32, 5 % takes the cheaper r=16
    assert choose(scores, tolerance=0.01).chosen.variant.r == 32
    assert choose(scores, tolerance=0.05).chosen.variant.r == 16
    assert ppl[16] / ppl[32] - 1 == pytest.approx(0.0396, abs=0.0005)
    # forgetting = 0.2 % per rank: at most 5 % rules out r=32 (6.4 %)
    c = choose(scores, tolerance=0.01, max_forgetting=0.05)
    assert c.chosen.variant.r == 16 and [s.variant.r for s in c.ruled_out] == [32]
    with pytest.raises(ConfigError, match="forgets more than"):
        choose(scores, max_forgetting=0.001)
    front = pareto_front(scores, "params")
    assert [s.variant.r for s in front] == [4, 8, 16, 32]
    assert choose(scores, cost="memory", tolerance=0.05).chosen.variant.r == 16
    with pytest.raises(ConfigError, match="unknown cost"):
        choose(scores, cost="flops")


def test_optuna_strategy_prunes_and_resumes_counting(tmp_path) -> None:
    obj = SyntheticObjective()
    opt = OptunaOptions(n_trials=12, seed=1)
    sampler, pruner = make_sampler_and_pruner(opt, min_resource=2)
    study = SearchStudy(default_storage(tmp_path), fingerprint="fp", sampler=sampler, pruner=pruner)
    out = optuna_search(study, obj, LRPlan(), opt, baseline=Variant(8, 16.0))
    recs = study.finished()
    assert sum(1 for r in recs if r.cached_study != "self") == 12
    assert recs[0].variant == Variant(8, 16.0)  # the enqueued baseline
    assert any(r.state == "PRUNED" for r in recs)
    assert out.choice.chosen.ppl <= min(r.val_ppl for r in recs) * 1.01
    # a second call on the same study has nothing left to do
    before = len(obj.ran)
    optuna_search(study, obj, LRPlan(), opt)
    assert len(obj.ran) == before


def test_variant_validation() -> None:
    with pytest.raises(ConfigError, match="rank"):
        Variant(0, 1.0)
    with pytest.raises(ConfigError, match="cannot vary method"):
        Variant(8, 16.0, method="adalora")
    assert Variant(8, 16.0, layers="top-half").layers_list(30) == tuple(range(15, 30))


def test_storage_url_errors_name_the_fix(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot open the study storage") as e:
        SearchStudy("notadb://nowhere", fingerprint="fp")
    assert "postgresql://" in (e.value.hint or "")
    # any SQLAlchemy URL Optuna accepts works, e.g. SQLite at an explicit path
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    SearchStudy(url, fingerprint="fp").run(RunConfig(Variant(4, 8.0), 2e-4), SyntheticObjective())
    assert len(SearchStudy(url, fingerprint="fp").finished()) == 1


def test_a_pruned_run_is_no_answer_for_a_full_run(tmp_path) -> None:
    obj = SyntheticObjective()
    opt = OptunaOptions(n_trials=2)
    sampler, pruner = make_sampler_and_pruner(opt, min_resource=2)
    pruning = SearchStudy(default_storage(tmp_path / "a"), fingerprint="fp", sampler=sampler, pruner=pruner)
    cfg = RunConfig(Variant(8, 16.0), 2e-4)
    # force a prune: the study's pruner sees a much better trial at the same steps first
    pruning.run(RunConfig(Variant(32, 64.0, "all-linear"), 4e-4 / 2), obj, prune=True)
    pruned = pruning.run(cfg, obj, prune=True)
    assert pruned.state == "PRUNED"
    plain = SearchStudy(default_storage(tmp_path / "b"), fingerprint="fp", cache_from=(pruning,))
    rec = plain.run(cfg, obj)
    assert rec.state == "COMPLETE" and rec.cached_from is None  # trained, not borrowed
    assert len(obj.ran) == 3


def test_diverged_runs_are_recorded_failed_never_chosen_never_rerun(tmp_path) -> None:
    obj = SyntheticObjective(diverge_above=5e-3)  # lr·scaling above 5e-3 "diverges"
    study = SearchStudy(default_storage(tmp_path), fingerprint="fp")
    plan = LRPlan(base_lr=2e-3, base_scaling=2.0, max_runs=2)
    out = StagedSearch(study, obj, plan, StagedOptions(max_r=16)).run(Variant(8, 16.0))
    diverged = [r for r in study.finished() if r.result.status == "diverged"]
    assert diverged and all(r.state == "FAIL" for r in diverged)
    assert out.choice.chosen.learning_rate * out.choice.chosen.variant.scaling <= 5e-3
    ran = len(obj.ran)
    StagedSearch(SearchStudy(default_storage(tmp_path), fingerprint="fp"), obj, plan, StagedOptions(max_r=16)).run(
        Variant(8, 16.0)
    )
    assert len(obj.ran) == ran  # a replay of the same search trains nothing, diverged runs included
