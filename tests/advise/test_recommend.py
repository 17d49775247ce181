import json

import pytest

from loratune.advise import AdviceInputs, count_data, recommend
from loratune.anatomy.targets import TargetSpec
from loratune.budget import AdapterSpec, count_params
from loratune.errors import ConfigError
from loratune.models import catalog_names, load_anatomy, resolve_source

GiB = 1024**3


def anatomy(name):
    return load_anatomy(resolve_source(name))


def test_seed_gpt2_example_comes_out_as_the_seed_says():
    # seed 000 §4.1 시나리오 1 / §5.1: GPT-2 small, 1,000 simple-QA samples, 8 GB → r 8, alpha 16,
    # c_attn + c_proj, dropout 0.05, 811,008 trainable params (0.65 %).
    rec = recommend(
        anatomy("gpt2"), AdviceInputs(task="simple-qa", dataset_size=1000, vram_bytes=8 * GiB, rules="seed")
    )
    c = rec.config
    assert (c["r"], c["lora_alpha"], c["target_modules"], c["lora_dropout"]) == (8, 16, ["c_attn", "c_proj"], 0.05)
    assert rec.trainable_params == 811_008
    assert round(rec.trainable_percent, 2) == 0.65
    assert rec.memory["fits"] is True and rec.fit_steps == []
    note = rec.explanation("target_modules").note
    assert "811,008" in note and "442,368" in note  # the c_proj name clash, with both counts


def test_combined_gpt2_follows_the_literature_and_shows_the_seed():
    rec = recommend(anatomy("gpt2"), AdviceInputs(task="simple-qa", dataset_size=1000, vram_bytes=8 * GiB))
    t = rec.explanation("target_modules")
    assert t.value == ["c_attn", "c_proj", "c_fc"]
    assert t.alternative.value == ["c_attn", "c_proj"] and "seed 000" in t.alternative.source
    assert rec.trainable_params == 12 * 8 * (3072 + 1536 + 3840 + 3840)  # 1,179,648: every linear layer
    dora = rec.explanation("use_dora")
    assert dora.value is False and dora.alternative.value is True and "2602.04998" in dora.note


@pytest.mark.parametrize(
    ("preset", "model", "expected"),
    [
        ("simple-qa", "gpt2", (8, 16, ["c_attn", "c_proj"], 0.05)),
        ("complex-generation", "llama-2-7b", (16, 32, ["q_proj", "k_proj", "v_proj", "o_proj"], 0.1)),
        ("memory-constrained", "llama-2-7b", (4, 8, ["q_proj", "v_proj"], 0.05)),
    ],
)
def test_the_three_presets(preset, model, expected):
    rec = recommend(anatomy(model), AdviceInputs(preset=preset, rules="seed"))
    c = rec.config
    assert (c["r"], c["lora_alpha"], c["target_modules"], c["lora_dropout"]) == expected
    assert rec.explanation("r").source.startswith("seed 000 §4.1")


def test_preset_under_combined_keeps_values_and_shows_the_literature():
    rec = recommend(anatomy("llama-2-7b"), AdviceInputs(preset="complex-generation"))
    t = rec.explanation("target_modules")
    assert t.value == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert len(t.alternative.value) == 7


@pytest.mark.parametrize("name", catalog_names())
@pytest.mark.parametrize("rules", ["seed", "combined", "literature"])
def test_every_catalog_model_gets_a_consistent_recommendation(name, rules):
    a = anatomy(name)
    rec = recommend(a, AdviceInputs(task="complex-qa", dataset_size=5000, vram_bytes=24 * GiB, rules=rules))
    c = rec.config
    spec = AdapterSpec(
        TargetSpec(tuple(c["target_modules"])), r=c["r"], alpha=c["lora_alpha"], dropout=c["lora_dropout"]
    )
    assert rec.trainable_params == count_params(a, spec).trainable_params  # the count is the config's
    assert rec.memory["total_bytes"] > 0
    d = rec.to_dict()
    assert {"config", "training", "explanations", "trainable_params", "memory"} <= set(d)
    assert all(e["source"] and e["rule"] for e in d["explanations"])
    json.dumps(d)  # plain data


def test_fit_to_small_vram_lists_steps_in_the_seed_order():
    rec = recommend(anatomy("llama-2-7b"), AdviceInputs(task="complex-qa", dataset_size=5000, vram_bytes=8 * GiB))
    actions = [s.action for s in rec.fit_steps]
    order = ["lower r", "fewer modules", "smaller batch", "gradient checkpointing", "4-bit base"]
    firsts = [actions.index(a) for a in order]
    assert firsts == sorted(firsts)
    assert rec.training["quantization"] == "4bit" and rec.training["gradient_checkpointing"] is True
    assert rec.memory["fits"] and rec.memory["total_bytes"] <= 8 * GiB
    # the effective batch survives the smaller micro-batch
    assert rec.training["per_device_train_batch_size"] * rec.training["gradient_accumulation_steps"] == 16
    assert "VRAM fit" in rec.explanation("per_device_train_batch_size").note


def test_nothing_fits_names_the_minimum_vram():
    rec = recommend(anatomy("llama-2-70b"), AdviceInputs(dataset_size=1000, vram_bytes=8 * GiB))
    assert rec.memory["fits"] is False
    assert rec.memory["minimum_vram_bytes"] == rec.fit_steps[-1].total_bytes > 8 * GiB


def test_protect_knowledge_both_sides():
    a = anatomy("gpt2")
    seed = recommend(a, AdviceInputs(task="simple-qa", dataset_size=5000, protect_knowledge=True, rules="seed"))
    assert seed.config["layers_to_transform"] == [6, 7, 8, 9, 10, 11]
    assert seed.trainable_params == 811_008 // 2
    comb = recommend(a, AdviceInputs(task="simple-qa", dataset_size=5000, protect_knowledge=True))
    layers = comb.explanation("layers_to_transform")
    assert layers.value is None and layers.alternative.value == [6, 7, 8, 9, 10, 11]
    assert comb.training["num_train_epochs"] == 2  # 3 capped: forgetting grows with training length


def test_goals():
    a = anatomy("llama-2-7b")
    mem = recommend(a, AdviceInputs(goal="memory", rules="seed"))
    assert mem.config["target_modules"] == ["q_proj", "v_proj"] and mem.config["use_dora"] is False
    q = recommend(a, AdviceInputs(goal="quality"))
    assert q.config["use_dora"] is True and q.method == "dora"


def test_free_text_task_mapping_is_shown():
    rec = recommend(anatomy("mistral-7b"), AdviceInputs(task="legal contract drafting", rules="seed"))
    assert rec.task == "expert"
    assert "matched 'legal'" in rec.explanation("task").rule


def test_adalora_schedule_from_dataset_and_batch():
    rec = recommend(anatomy("llama-2-7b"), AdviceInputs(task="simple-qa", dataset_size=2000, method="adalora"))
    c = rec.config
    assert rec.training["max_steps"] == 125 * 3  # ceil(2000/16) steps × 3 epochs
    assert (c["init_r"], c["target_r"], c["total_step"], c["tinit"], c["tfinal"]) == (12, 8, 375, 37, 75)
    assert "r" not in c and "use_dora" not in c


def test_bad_inputs_raise_config_errors():
    a = anatomy("gpt2")
    with pytest.raises(ConfigError):
        recommend(a, AdviceInputs(rules="vibes"))
    with pytest.raises(ConfigError):
        recommend(a, AdviceInputs(dataset_size=0))
    with pytest.raises(ConfigError) as e:
        recommend(a, AdviceInputs(method="adalora"))
    assert "--dataset-size" in e.value.hint


def test_count_data_counts_examples_and_approximate_tokens(tmp_path):
    p = tmp_path / "qa.jsonl"
    rows = [{"prompt": "Q" * 40, "response": "A" * 60} for _ in range(30)]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    c = count_data(p)
    assert (c.examples, c.approx_tokens) == (30, 30 * 100 // 4)
    rec = recommend(anatomy("gpt2"), AdviceInputs(dataset_size=c.examples, dataset_tokens=c.approx_tokens))
    assert rec.explanation("r").inputs["dataset_tokens"] == 750


def test_local_directory(tiny_config, tmp_path):
    tiny_config("llama", vocab_size=256).save_pretrained(tmp_path)
    rec = recommend(load_anatomy(resolve_source(str(tmp_path))), AdviceInputs(task="simple-qa", dataset_size=100))
    # all 7 projections × 2 layers at r=8: q 64→64, k/v 64→32, o 64→64, gate/up 64→128, down 128→64
    per_layer = 8 * ((64 + 64) + 2 * (64 + 32) + (64 + 64) + 2 * (64 + 128) + (128 + 64))
    assert rec.trainable_params == 2 * per_layer


def test_model_size_disagreement_is_shown():
    # No task: the seed starts from recommend_rank(3000) = 16 and its model-size range (13B → 32–64) lifts it
    # to 32; the literature says a larger model needs a lower rank (2310.17513).
    rec = recommend(anatomy("llama-2-13b"), AdviceInputs(dataset_size=3000))
    r = rec.explanation("r")
    assert r.value == 8 and r.alternative.value == 32
    assert "2310.17513" in r.note
    assert recommend(anatomy("llama-2-13b"), AdviceInputs(dataset_size=3000, rules="seed")).config["r"] == 32


def test_goal_memory_caps_rank_but_keeps_every_module():
    rec = recommend(anatomy("mistral-7b"), AdviceInputs(task="expert", goal="memory"))
    assert rec.config["r"] == 8 and len(rec.config["target_modules"]) == 7
    assert rec.explanation("r").alternative.value == 64  # the seed's expert rank
