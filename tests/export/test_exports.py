import ast
import dataclasses
import json

import pytest
import yaml

from loratune.advise import AdviceInputs, recommend
from loratune.errors import ConfigError
from loratune.export import FORMATS, export_config
from loratune.export.axolotl import AXOLOTL_KEYS
from loratune.export.llamafactory import LLAMAFACTORY_KEYS
from loratune.export.peft import ADALORA_KEYS, LORA_KEYS
from loratune.export.torchtune import MODEL_KEYS, TOP_KEYS
from loratune.export.unsloth import UNSLOTH_LOAD_KEYS, UNSLOTH_PASSTHROUGH_KEYS, UNSLOTH_PEFT_KEYS
from loratune.models import load_anatomy, resolve_source

GiB = 1024**3


def rec_for(model, **kw):
    return recommend(load_anatomy(resolve_source(model)), AdviceInputs(**kw)).to_dict()


@pytest.fixture(scope="module")
def llama():
    return rec_for("llama-2-7b", task="complex-qa", dataset_size=5000, vram_bytes=8 * GiB)


def yaml_body(text):
    return yaml.safe_load(text)


def test_formats():
    assert FORMATS == ("peft", "peft-python", "axolotl", "llamafactory", "unsloth", "torchtune")
    with pytest.raises(ConfigError):
        export_config("deepspeed", {"config": {}}, "x")


def test_peft_whitelists_are_real_peft_fields():
    from peft import AdaLoraConfig, LoraConfig

    assert {f.name for f in dataclasses.fields(LoraConfig)} >= LORA_KEYS
    assert {f.name for f in dataclasses.fields(AdaLoraConfig)} >= ADALORA_KEYS


def _call_kwargs(tree, name):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == name:
            return {k.arg: ast.literal_eval(k.value) for k in node.keywords}
    raise AssertionError(f"no call to {name}")


def test_axolotl_keys_and_values(llama):
    text = export_config("axolotl", llama, "llama-2-7b")
    out = yaml_body(text)
    assert set(out) <= AXOLOTL_KEYS
    assert out["base_model"] == "meta-llama/Llama-2-7b-hf"  # the Hub id, not the catalog alias
    assert "meta-llama/Llama-2-7b-hf is the Hugging Face Hub id of loratune's catalog entry llama-2-7b" in text
    assert out["bf16"] is True  # the estimate assumed a bf16 base
    c, t = llama["config"], llama["training"]
    assert (out["lora_r"], out["lora_alpha"], out["lora_target_modules"]) == (
        c["r"],
        c["lora_alpha"],
        c["target_modules"],
    )
    assert out["adapter"] == "qlora" and out["load_in_4bit"] is True  # the fit chose a 4-bit base
    assert out["micro_batch_size"] * out["gradient_accumulation_steps"] == t["effective_batch_size"]


def test_llamafactory_keys_and_the_layer_list_it_cannot_express():
    rec = rec_for("gpt2", task="simple-qa", dataset_size=1000, protect_knowledge=True, rules="seed")
    text = export_config("llamafactory", rec, "gpt2")
    out = yaml_body(text)
    assert set(out) <= LLAMAFACTORY_KEYS
    assert out["finetuning_type"] == "lora" and out["lora_target"] == "c_attn,c_proj" and out["lora_rank"] == 8
    assert "CANNOT EXPRESS layers_to_transform=[6, 7, 8, 9, 10, 11]" in text
    assert out["model_name_or_path"] == "openai-community/gpt2" and out["bf16"] is True
    assert "upcast_layernorm" not in out and "quantization_bit" not in out  # a 16-bit base
    assert out["disable_gradient_checkpointing"] is True  # the estimate assumed checkpointing off


def test_llamafactory_4bit_base_upcasts_layernorms(llama):
    out = yaml_body(export_config("llamafactory", llama, "llama-2-7b"))
    assert out["quantization_bit"] == 4 and out["upcast_layernorm"] is True and out["bf16"] is True
    assert out["model_name_or_path"] == "meta-llama/Llama-2-7b-hf"


def test_unsloth_call_uses_only_its_parameters():
    rec = rec_for("llama-2-7b", task="simple-qa", dataset_size=1000, goal="quality", layers=(16, 17))
    text = export_config("unsloth", rec, "llama-2-7b")
    tree = ast.parse(text)
    peft = _call_kwargs(tree, "get_peft_model")
    assert set(peft) <= UNSLOTH_PEFT_KEYS | UNSLOTH_PASSTHROUGH_KEYS
    load = _call_kwargs(tree, "from_pretrained")
    assert set(load) <= UNSLOTH_LOAD_KEYS
    assert load["model_name"] == "meta-llama/Llama-2-7b-hf" and load["load_in_4bit"] is False
    assert peft["r"] == rec["config"]["r"] and peft["layers_to_transform"] == [16, 17]
    assert peft["use_dora"] is True and "CANNOT EXPRESS" not in text  # goal=quality turned DoRA on


def test_torchtune_llama_names(llama):
    out = yaml_body(export_config("torchtune", llama, "llama-2-7b"))
    assert set(out) <= TOP_KEYS and set(out["model"]) <= MODEL_KEYS
    m = out["model"]
    assert m["_component_"] == "torchtune.models.llama2.lora_llama2_7b"
    assert m["lora_attn_modules"] == ["q_proj", "k_proj", "v_proj", "output_proj"]
    assert m["apply_lora_to_mlp"] is True and m["quantize_base"] is True
    assert out["optimizer"]["lr"] == llama["training"]["learning_rate"]


def test_torchtune_phi3_fused_qkv_and_non_llama_names_refused():
    phi = yaml_body(export_config("torchtune", rec_for("phi-3-mini", goal="memory", rules="seed"), "phi-3-mini"))
    assert phi["model"]["lora_attn_modules"] == ["q_proj", "k_proj", "v_proj"]
    gpt2_names = rec_for("gpt2")  # c_attn, c_proj... handed over as if for a llama
    with pytest.raises(ConfigError) as e:
        export_config("torchtune", gpt2_names, "llama-2-7b")
    assert "llama-style" in e.value.message


@pytest.mark.parametrize("model", ["qwen3-14b", "smollm2-135m", "gpt2"])
def test_torchtune_refuses_a_model_without_a_released_builder(model):
    with pytest.raises(ConfigError) as e:
        export_config("torchtune", rec_for(model, dataset_size=1000), model)
    assert f"torchtune 0.6.1 has no LoRA model builder for {model}" in e.value.message
    assert "llama-3.1-8b" in e.value.hint and "qwen2.5-7b" in e.value.hint  # the ones that exist


def test_local_paths_are_written_as_paths_and_said_so(llama, tiny_gpt2_dir, tmp_path):
    d, _ = tiny_gpt2_dir
    text = export_config("axolotl", llama, str(d))
    assert yaml_body(text)["base_model"] == str(d.resolve())
    assert f"{d.resolve()} is the local model directory loratune read" in text
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    text = export_config("llamafactory", llama, str(gguf))
    assert yaml_body(text)["model_name_or_path"] == str(gguf.resolve()) and "local .gguf file" in text
    tree = ast.parse(export_config("unsloth", llama, str(d)))
    assert _call_kwargs(tree, "from_pretrained")["model_name"] == str(d.resolve())


def test_adalora_exports_only_to_peft():
    rec = rec_for("llama-2-7b", dataset_size=2000, method="adalora")
    for fmt in ("axolotl", "llamafactory", "unsloth", "torchtune"):
        with pytest.raises(ConfigError) as e:
            export_config(fmt, rec, "llama-2-7b")
        assert "only PEFT" in e.value.message
    assert set(json.loads(export_config("peft", rec, "llama-2-7b"))) <= ADALORA_KEYS


def test_adalora_python_snippet_says_to_call_update_and_allocate():
    from peft import AdaLoraConfig

    rec = rec_for("llama-2-7b", dataset_size=2000, method="adalora")
    text = export_config("peft-python", rec, "llama-2-7b")
    tree = ast.parse(text)  # still valid Python
    AdaLoraConfig(**_call_kwargs(tree, "AdaLoraConfig"))
    assert "model.base_model.update_and_allocate(step)" in text and "Trainer does not" in text
    callback = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "AdaLoraStep")
    assert "update_and_allocate" in ast.unparse(callback)
    lora = export_config("peft-python", rec_for("llama-2-7b", dataset_size=2000), "llama-2-7b")
    assert "update_and_allocate" not in lora


@pytest.fixture
def tiny_gpt2_dir(tiny_config, tmp_path):
    d = tmp_path / "tiny-gpt2"
    cfg = tiny_config("gpt2", n_positions=64)
    cfg.save_pretrained(d)
    return d, cfg


@pytest.mark.parametrize(
    "inputs",
    [
        {"task": "simple-qa", "dataset_size": 200, "rules": "seed"},  # c_attn, c_proj (hits the MLP too)
        {"task": "simple-qa", "dataset_size": 200, "goal": "quality"},  # every linear layer + DoRA
        {"task": "simple-qa", "dataset_size": 200, "method": "adalora"},
    ],
)
def test_peft_json_round_trip_on_a_tiny_model(tiny_gpt2_dir, inputs):
    import torch
    from peft import AdaLoraConfig, LoraConfig, get_peft_model
    from transformers import GPT2LMHeadModel

    d, cfg = tiny_gpt2_dir
    rec = recommend(load_anatomy(resolve_source(str(d))), AdviceInputs(**inputs))
    kw = json.loads(export_config("peft", rec.to_dict(), str(d)))
    config = AdaLoraConfig(**kw) if rec.method == "adalora" else LoraConfig(**kw)
    torch.manual_seed(0)
    model = get_peft_model(GPT2LMHeadModel(cfg), config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == rec.trainable_params


def test_peft_python_snippet_rebuilds_the_config(llama):
    from peft import LoraConfig

    text = export_config("peft-python", llama, "llama-2-7b")
    tree = ast.parse(text)
    kw = _call_kwargs(tree, "LoraConfig")
    # The recommendation's values, PEFT defaults (use_dora=False, use_rslora=False) left out.
    assert kw == {k: v for k, v in llama["config"].items() if v is not False}
    assert list(kw)[:4] == ["r", "lora_alpha", "lora_dropout", "target_modules"]
    LoraConfig(**kw)
    assert "from_pretrained('meta-llama/Llama-2-7b-hf')" in text
