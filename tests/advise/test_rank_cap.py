"""No rule recommends a rank the model's matrices cannot hold (rules.rank_ceiling, LoRA §4.1)."""

from __future__ import annotations

from loratune.advise import AdviceInputs, recommend
from loratune.advise.rules import rank_ceiling
from loratune.models import load_anatomy, resolve_source


def test_rank_ceiling_is_the_power_of_two_below_the_break_even_rank() -> None:
    # break-even in·out/(in + out): 768×768 → 384 → 256; 768→2304 → 576 → 512; the smallest decides.
    assert rank_ceiling([(768, 768)]) == 256
    assert rank_ceiling([(768, 2304)]) == 512
    assert rank_ceiling([(768, 2304), (768, 768)]) == 256
    assert rank_ceiling([(4096, 4096)]) == 2048
    assert rank_ceiling([(2, 1)]) == 1


def test_huge_dataset_on_gpt2_is_capped_and_says_so() -> None:
    gpt2 = load_anatomy(resolve_source("gpt2"))
    rec = recommend(gpt2, AdviceInputs(dataset_size=10_000_000))
    r = rec.explanation("r")
    assert rec.config["r"] == r.value == 256  # was 16384 for a 768-wide model
    assert "capped at 256" in r.rule and "r·(in + out) ≥ in·out" in r.rule
    assert r.inputs["uncapped_r"] > 256 and r.inputs["rank_ceiling"] == 256
    assert rec.config["lora_alpha"] == 512


def test_adalora_init_r_fits_the_smallest_module(tmp_path) -> None:
    import json

    d = tmp_path / "tiny"
    d.mkdir()
    cfg = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": 2, "n_embd": 32, "n_head": 2}
    (d / "config.json").write_text(json.dumps({**cfg, "vocab_size": 64, "n_positions": 64}))
    rec = recommend(load_anatomy(resolve_source(str(d))), AdviceInputs(dataset_size=200, method="adalora"))
    assert rec.config["init_r"] <= 32 and rec.config["target_r"] <= rec.config["init_r"]
