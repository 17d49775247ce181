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
