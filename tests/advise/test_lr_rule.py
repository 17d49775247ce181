"""The LoRA learning-rate rule against its sources, worked out here from the published numbers.

Full fine-tuning LR = 5e-5 · (2000 / hidden)^0.781 (tinker-cookbook ``hyperparam_utils.get_lr``, Llama 3 fit);
LoRA = 10× that (LoRA Without Regret), 15× in short runs, both at lora_alpha 32; another alpha scales it by
32/α (lr·α stays put). The expected values below are that arithmetic, not the function's output.
"""

import math

import pytest

from loratune.advise import AdviceInputs, recommend
from loratune.advise import rules as R
from loratune.advise.lr_rule import lora_learning_rate, lora_ratio
from loratune.errors import ConfigError
from loratune.models import load_anatomy, resolve_source


def _by_hand(hidden: int, ratio: float, alpha: float = 32.0) -> float:
    return ratio * 5e-5 * math.exp(0.781 * math.log(2000 / hidden)) * 32 / alpha


@pytest.mark.parametrize(
    ("hidden", "model", "low", "high"),
    [
        (576, "SmolLM2-135M", 1.2e-3, 1.4e-3),  # 10 · 5e-5 · 3.472^0.781 = 10 · 5e-5 · 2.644 = 1.32e-3
        (4096, "a 7B (Llama-2-7b)", 2.7e-4, 3.0e-4),  # 10 · 5e-5 · 0.4883^0.781 = 2.86e-4
        (8192, "a 70B (Llama-2-70b)", 1.5e-4, 1.8e-4),  # 10 · 5e-5 · 0.2441^0.781 = 1.66e-4
    ],
)
def test_long_runs_get_ten_times_the_width_fitted_full_ft_lr(hidden, model, low, high):
    advice = lora_learning_rate(hidden, 1000)
    expected = _by_hand(hidden, 10.0)
    assert low < expected < high, model  # the hand arithmetic in the comment
    assert advice.value == pytest.approx(expected, rel=0.04)  # two significant figures
    assert advice.full_ft_lr == pytest.approx(expected / 10, rel=1e-9)
    assert advice.ratio == 10.0


def test_short_runs_get_fifteen_times():
    assert lora_learning_rate(576, 30).value == pytest.approx(_by_hand(576, 15.0), rel=0.04)  # 1.98e-3
    assert lora_learning_rate(4096, 10).value == pytest.approx(_by_hand(4096, 15.0), rel=0.04)  # 4.29e-4


def test_the_ratio_moves_log_linearly_between_30_and_100_steps():
    # halfway in log steps (√(30·100) ≈ 54.8) the ratio is halfway in log ratio: √(10·15) ≈ 12.25
    assert lora_ratio(round(math.sqrt(3000))) == pytest.approx(math.sqrt(150), rel=0.01)
    assert lora_ratio(None) == lora_ratio(100) == lora_ratio(10_000) == 10.0
    assert lora_ratio(1) == lora_ratio(30) == 15.0


def test_the_issue_targets_for_smollm2():
    # issue #13, SmolLM2-135M with 1,000 QA examples: ~1e-3 at one epoch, 2e-3–4e-3 at ~30 steps (at the source's
    # alpha 32). One epoch is 63 steps at batch 16 (the advice's), 113 at batch 8 of a 90 % split; the advice's
    # own 3 epochs are 189.
    for steps in (63, 100, 113, 130, 189):
        assert 0.7e-3 <= lora_learning_rate(576, steps).value <= 1.5e-3, steps
    assert 2e-3 <= lora_learning_rate(576, 30).value <= 4e-3


@pytest.mark.parametrize("steps", [None, 20, 50, 80, 200])
def test_wider_models_get_lower_rates(steps):
    values = [lora_learning_rate(h, steps).value for h in (64, 576, 768, 2048, 4096, 5120, 8192, 16384)]
    assert values == sorted(values, reverse=True) and values[0] > values[-1]


@pytest.mark.parametrize("hidden", [576, 4096, 8192])
def test_longer_runs_get_lower_rates(hidden):
    values = [lora_learning_rate(hidden, s).value for s in (1, 10, 30, 40, 55, 70, 90, 100, 500, 10_000)]
    assert values == sorted(values, reverse=True) and values[0] > values[-1]


@pytest.mark.parametrize("hidden", [576, 4096, 8192])
def test_lr_times_alpha_stays_put(hidden):
    # the source's ratio is at alpha 32; alpha multiplies every update, so alpha 16 wants twice the LR
    at_32 = lora_learning_rate(hidden, 189).value
    assert lora_learning_rate(hidden, 189, 32.0).value == at_32
    for alpha in (8.0, 16.0, 64.0, 128.0):
        advice = lora_learning_rate(hidden, 189, alpha)
        assert advice.value == pytest.approx(_by_hand(hidden, lora_ratio(189), alpha), rel=0.04)
        # both values rounded to two significant figures: 1.1e-3 may be up to 4.5 % off, 2.9e-4 1.7 %
        assert advice.value * alpha == pytest.approx(at_32 * 32, rel=0.07), alpha
        assert advice.alpha == alpha
    # SmolLM2 with the recommended alpha 16 over 30 steps: 15 · 5e-5 · 2.644 · 2 = 3.97e-3
    assert lora_learning_rate(576, 30, 16.0).value == 4e-3


def test_the_rule_names_formula_width_steps_and_alpha():
    ex = R.lr_literature(576, 189, 16.0)
    assert ex.param == "learning_rate" and ex.value == lora_learning_rate(576, 189, 16.0).value
    assert "5e-5·(2000/h)^0.781" in ex.rule and "h = 576" in ex.rule and "189 steps" in ex.rule
    assert "32/α = 2 for α = 16" in ex.rule
    assert "32/α" not in R.lr_literature(576, 189, 32.0).rule  # the source's own alpha needs no factor
    assert "extrapolated" in ex.rule  # below the fit's 2048
    assert "extrapolated" not in R.lr_literature(4096, 189, 16.0).rule
    assert "Without Regret" in ex.source and "tinker-cookbook" in ex.source
    assert ex.inputs["hidden_size"] == 576 and ex.inputs["total_steps"] == 189 and ex.inputs["lora_alpha"] == 16


def test_bad_widths_and_steps_are_config_errors():
    with pytest.raises(ConfigError):
        lora_learning_rate(0, 10)
    with pytest.raises(ConfigError):
        lora_learning_rate(576, 0)
    with pytest.raises(ConfigError, match="lora_alpha"):
        lora_learning_rate(576, 10, 0.0)


def test_recommend_uses_the_models_width_and_the_callers_steps():
    smol = load_anatomy(resolve_source("smollm2-135m"))
    llama70 = load_anatomy(resolve_source("llama-2-70b"))
    assert smol.facts.hidden_size == 576 and llama70.facts.hidden_size == 8192
    rec = recommend(smol, AdviceInputs(task="simple-qa", dataset_size=1000))
    assert rec.training["max_steps"] == 189  # ceil(1000 / 16) × 3 epochs
    assert rec.config["lora_alpha"] == 16  # 2r at r = 8: twice the LR of the source's alpha 32
    assert rec.training["learning_rate"] == lora_learning_rate(576, 189, 16.0).value == 2.6e-3
    lr = rec.explanation("learning_rate")
    assert lr.alternative is not None and lr.alternative.value == 2e-4  # the seed's alpha-16 pair
    short = recommend(smol, AdviceInputs(task="simple-qa", dataset_size=1000, total_steps=30))
    assert short.training["learning_rate"] == lora_learning_rate(576, 30, 16.0).value == 4e-3
    assert short.training["max_steps"] == 189  # the schedule is the advice's; only the LR follows the caller
    big = recommend(llama70, AdviceInputs(task="simple-qa", dataset_size=1000))
    assert big.config["lora_alpha"] == 16
    assert big.training["learning_rate"] == lora_learning_rate(8192, 189, 16.0).value == 3.3e-4
    seed = recommend(smol, AdviceInputs(task="simple-qa", dataset_size=1000, rules="seed"))
    assert seed.training["learning_rate"] == 2e-4  # --rules seed keeps the seed's pair


def test_the_search_baseline_centres_on_its_own_run_length():
    from loratune.search.baseline import recommended_baseline

    smol = load_anatomy(resolve_source("smollm2-135m"))
    assert recommended_baseline(smol, 1000, "simple-qa")[1] == 2.6e-3
    assert recommended_baseline(smol, 1000, "simple-qa", total_steps=30)[1] == 4e-3


def test_bad_total_steps_is_refused():
    with pytest.raises(ConfigError, match="total steps"):
        recommend(load_anatomy(resolve_source("gpt2")), AdviceInputs(total_steps=0))


def test_the_lr_follows_the_alpha_the_vram_fit_leaves():
    # llama-2-7b, generation, 20,000 examples: r 32 α 64 unconstrained; 6 GiB cuts it to r 8 α 16, so the LR
    # doubles twice (lr·α stays put), and its row keeps its place in the table
    llama7 = load_anatomy(resolve_source("llama-2-7b"))
    free = recommend(llama7, AdviceInputs(task="generation", dataset_size=20_000))
    tight = recommend(llama7, AdviceInputs(task="generation", dataset_size=20_000, vram_bytes=6 * 2**30))
    assert (free.config["r"], free.config["lora_alpha"]) == (32, 64)
    assert (tight.config["r"], tight.config["lora_alpha"]) == (8, 16)
    steps = free.training["max_steps"]
    assert free.training["learning_rate"] == lora_learning_rate(4096, steps, 64.0).value == 1.4e-4
    assert tight.training["learning_rate"] == lora_learning_rate(4096, steps, 16.0).value == 5.7e-4
    assert tight.explanation("learning_rate").inputs["lora_alpha"] == 16
    params = [e.param for e in tight.explanations]
    assert params.index("learning_rate") == params.index("total_steps") + 1
