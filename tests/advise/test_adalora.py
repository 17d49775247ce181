import pytest

from loratune.advise.adalora import adalora_schedule
from loratune.errors import ConfigError


def test_schedule_follows_the_paper_and_peft():
    s, ex = adalora_schedule(8, 1000, "combined")
    assert (s.init_r, s.target_r, s.tinit, s.tfinal, s.deltaT, s.total_step) == (12, 8, 100, 200, 10, 1000)
    assert s.budgeting_steps == 700
    init = next(e for e in ex if e.param == "init_r")
    assert init.alternative.value == 16  # the seed's 2× start


def test_seed_schedule_uses_the_seed_proportions():
    # seed 003 §3.2: init_r 16, target_r 8, tinit 200, tfinal 1000 of total_step 10000
    s, _ = adalora_schedule(8, 10_000, "seed")
    assert (s.init_r, s.tinit, s.tfinal, s.deltaT) == (16, 200, 1000, 10)


def test_short_runs_shrink_delta_t():
    s, _ = adalora_schedule(4, 20, "combined")
    assert (s.tinit, s.tfinal, s.deltaT) == (2, 4, 1)
    assert s.tinit < s.total_step - s.tfinal  # PEFT's own check


def test_needs_total_step():
    with pytest.raises(ConfigError) as e:
        adalora_schedule(8, None, "combined")
    assert "--dataset-size" in e.value.hint


def test_one_schedule_short_runs_keep_a_budgeting_phase():
    from loratune.budget.adalora_schedule import adalora_steps

    for total in (1, 2, 3, 5, 9, 10, 37, 1000):
        s = adalora_steps(total)
        assert s.tinit < s.total_step - s.tfinal  # PEFT's own check (AdaLoraConfig.__post_init__)
        assert s.tfinal >= (1 if total > 1 else 0)  # PEFT fixes the final ranks at step total - tfinal
    assert adalora_steps(1000).peft_kwargs() == {"total_step": 1000, "tinit": 100, "tfinal": 200, "deltaT": 10}


def test_trial_builds_adalora_with_the_advised_schedule(monkeypatch):
    """trial/loop.py's build_peft_model hands PEFT exactly the numbers the advice recommends."""
    import sys
    import types

    import torch  # noqa: F401

    from loratune.anatomy.targets import TargetSpec
    from loratune.budget.spec import AdapterSpec
    from loratune.models import load_anatomy, resolve_source
    from loratune.trial.loop import build_peft_model

    seen: dict = {}

    def config(**kw):
        seen.update(kw)
        return kw

    fake = types.ModuleType("peft")
    fake.AdaLoraConfig = config
    fake.LoraConfig = config
    fake.get_peft_model = lambda base, cfg: base
    monkeypatch.setitem(sys.modules, "peft", fake)
    anatomy = load_anatomy(resolve_source("gpt2"))
    spec = AdapterSpec(TargetSpec(("c_attn",)), r=12, alpha=16, method="adalora", target_r=8)
    for total in (20, 189, 1000):
        build_peft_model(object(), anatomy, spec, total, None)
        advised, _ = adalora_schedule(8, total, "combined")
        assert {k: seen[k] for k in ("total_step", "tinit", "tfinal", "deltaT")} == {
            "total_step": advised.total_step,
            "tinit": advised.tinit,
            "tfinal": advised.tfinal,
            "deltaT": advised.deltaT,
        }
