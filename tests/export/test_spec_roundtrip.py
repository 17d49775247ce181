"""PEFT kwargs ↔ AdapterSpec, both directions, by the one pair of functions in budget/spec.py.

(Lives under tests/export because the exporters are its main reader; it tests loratune.budget.spec.)"""

import dataclasses

import pytest

from loratune.anatomy.targets import TargetSpec
from loratune.budget.spec import AdapterSpec, default_alpha, peft_fields, split_peft_kwargs
from loratune.errors import ConfigError

T = TargetSpec(("q_proj", "v_proj"))
SPECS = {
    "lora": AdapterSpec(T, r=8, alpha=16),
    "dora, fractional alpha": AdapterSpec(T, r=4, alpha=12.5, method="dora", dropout=0.1),
    "rslora": AdapterSpec(T, r=64, alpha=16, use_rslora=True, dropout=0.0),
    "adalora": AdapterSpec(T, r=12, alpha=24, method="adalora", target_r=4),
    "rank and alpha patterns": AdapterSpec(
        T, r=8, alpha=16, rank_pattern={"v_proj": 16}, alpha_pattern={"v_proj": 32.0}
    ),
    "layers, exclude, save, bias": AdapterSpec(
        TargetSpec(
            ("q_proj", "down_proj"),
            layers_to_transform=(2, 3),
            layers_pattern=("layers",),
            exclude_modules=("layers.3.mlp.down_proj",),
            modules_to_save=("lm_head",),
        ),
        r=16,
        alpha=32,
        lora_bias=True,
    ),
    "all-linear": AdapterSpec(TargetSpec("all-linear"), r=8, alpha=16),
    "regex": AdapterSpec(TargetSpec(r".*\.(q|v)_proj"), r=8, alpha=16),
}


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_spec_to_kwargs_and_back_is_identity(spec):
    kw = spec.peft_kwargs()
    assert AdapterSpec.from_peft_kwargs(kw) == spec
    again, extra = split_peft_kwargs(kw)
    assert again.peft_kwargs() == kw and extra == {}


ADALORA_SCHEDULE = {"tinit": 20, "tfinal": 40, "deltaT": 5, "total_step": 200, "beta1": 0.85}


def test_adalora_schedule_and_unmodelled_keys_pass_through_unchanged():
    kw = SPECS["adalora"].peft_kwargs() | ADALORA_SCHEDULE | {"task_type": "CAUSAL_LM", "bias": "none"}
    spec, extra = split_peft_kwargs(kw)
    assert (spec.method, spec.r, spec.target_r) == ("adalora", 12, 4)
    assert extra == ADALORA_SCHEDULE | {"task_type": "CAUSAL_LM", "bias": "none"}
    assert spec.peft_kwargs() | extra == kw


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_what_real_peft_saves_reads_back_to_the_same_spec(spec):
    """``LoraConfig(**kw).to_dict()`` — an adapter_config.json, every default written out — reads back."""
    from peft import AdaLoraConfig, LoraConfig

    kw = spec.peft_kwargs() | ({"total_step": 100} if spec.method == "adalora" else {})
    saved = (AdaLoraConfig if spec.method == "adalora" else LoraConfig)(**kw).to_dict()
    back = AdapterSpec.from_peft_kwargs(saved)
    # PEFT stores target_modules as a set; the read sorts it.
    tm = spec.targets.target_modules
    want = dataclasses.replace(
        spec, targets=dataclasses.replace(spec.targets, target_modules=tm if isinstance(tm, str) else tuple(sorted(tm)))
    )
    assert back == want


def test_missing_values_get_loratune_defaults():
    spec, _ = split_peft_kwargs({"r": 16, "target_modules": ["q_proj"]})
    assert spec.alpha == default_alpha(16) == 32  # seed guide 000 §2.2 rule 1: alpha = 2r
    assert split_peft_kwargs({"target_modules": ["q_proj"]})[0].r == 8  # PEFT's default r
    assert split_peft_kwargs({"init_r": 6}, default_targets=T)[0].alpha == 12


def test_partial_fields_name_only_what_the_kwargs_hold():
    assert peft_fields({"r": 4, "use_dora": True}) == ({"method": "dora", "r": 4}, {})
    fields, extra = peft_fields({"init_r": 12, "target_r": 4, "use_rslora": True, "tinit": 5})
    assert fields == {"method": "adalora", "r": 12, "target_r": 4}
    assert extra == {"use_rslora": True, "tinit": 5}  # AdaLoRA ignores rsLoRA: PEFT gets it as given


def test_contradictions_are_refused_with_the_field_named():
    with pytest.raises(ConfigError, match="use_dora"):
        peft_fields({"init_r": 12, "use_dora": True})
    with pytest.raises(ConfigError, match="target_modules"):
        split_peft_kwargs({"r": 8})
    with pytest.raises(ConfigError, match="exclude_modules"):
        peft_fields({"r": 8, "target_modules": ["q_proj"], "exclude_modules": "lm_head"})
    with pytest.raises(ConfigError, match="unknown method"):
        peft_fields({"method": "ia3"})
