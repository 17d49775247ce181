"""Our exact count equals PEFT's ``get_nb_trainable_parameters()`` on the same model and config.

Every case builds the real transformers model on the meta device (no memory), wraps it with PEFT
using the kwargs loratune exports, and compares (trainable, all) with loratune's count computed
from the catalog snapshot — so the snapshot, the target resolution, the formulas and the exported
PEFT config are checked together.
"""

from __future__ import annotations

import warnings

import peft  # noqa: E402  (a dependency: missing is a failure)
import pytest

from loratune.anatomy.extract import anatomy_from_model
from loratune.anatomy.targets import TargetSpec, parse_targets, resolve
from loratune.budget import AdapterSpec, count_params
from loratune.models import build_meta_model, load_anatomy, read_config, resolve_source


def spec(targets: str, r: int = 8, alpha: float = 16, method: str = "lora", **kw) -> AdapterSpec:
    tkw = {
        k: kw.pop(k)
        for k in list(kw)
        if k in ("layers_to_transform", "layers_pattern", "exclude_modules", "modules_to_save", "include_embeddings")
    }
    return AdapterSpec(TargetSpec(parse_targets(targets), **tkw), r=r, alpha=alpha, method=method, **kw)


CASES = [
    ("gpt2", spec("c_attn,c_proj")),
    ("gpt2", spec("c_attn,c_proj", method="dora")),
    ("gpt2", spec("all-linear", r=16, alpha=32)),
    ("gpt2", spec("attention")),
    ("gpt2", spec("mlp", r=4)),
    ("gpt2", spec("c_attn,c_proj", layers_to_transform=tuple(range(6, 12)))),
    ("gpt2", spec("all-linear", layers_to_transform=(0, 1, 2, 3))),
    ("gpt2", spec("c_attn", modules_to_save=("lm_head",))),
    ("gpt2", spec("wte", method="dora", include_embeddings=True)),
    ("gpt2", spec("c_attn,c_fc", rank_pattern={"c_attn": 16}, alpha_pattern={"c_attn": 32.0})),
    ("gpt2", spec("c_attn,attn.c_proj", lora_bias=True)),
    ("gpt2-medium", spec("c_attn", r=4, alpha=8)),
    ("gpt2-xl", spec("all-linear")),
    ("llama-2-7b", spec("attention", r=16, alpha=32)),
    ("llama-2-7b", spec("all-linear", method="dora")),
    ("llama-2-13b", spec("q_proj,v_proj", layers_to_transform=tuple(range(20, 40)))),
    ("llama-2-70b", spec("all-linear", r=64, alpha=128)),
    ("llama-3.1-8b", spec("mlp", r=32, rank_pattern={"down_proj": 8})),
    ("mistral-7b", spec("all", r=16, method="dora")),
    ("qwen2.5-0.5b", spec("all-linear")),
    ("qwen2.5-7b", spec("attention", r=32, alpha=64, use_rslora=True)),
    (
        "qwen3-14b",
        spec("q_proj,k_proj,v_proj,o_proj", r=16, layers_to_transform=tuple(range(30, 40)), layers_pattern=("layers",)),
    ),
    ("phi-3-mini", spec("all-linear")),
    ("phi-3-mini", spec("qkv_proj,o_proj", method="dora")),
    ("falcon-7b", spec("query_key_value")),
    ("falcon-7b", spec("all-linear", r=4, method="dora")),
    ("bert-base-uncased", spec("query,value")),
    ("bert-base-uncased", spec("all-linear")),
    ("t5-base", spec("q,v")),
    ("t5-base", spec("all-linear", r=4, method="dora")),
    ("smollm2-135m", spec("attention")),
    ("smollm2-135m", spec(r"re:.*\.(q|v)_proj")),
    ("smollm2-135m", spec("all-linear", exclude_modules=("down_proj",))),
    ("smollm2-135m", spec("embed_tokens,q_proj", include_embeddings=True)),
]


def peft_counts(model, kwargs: dict, method: str) -> tuple[int, int]:
    cls = peft.AdaLoraConfig if method == "adalora" else peft.LoraConfig
    if method == "adalora":
        kwargs = {**kwargs, "total_step": 100}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = peft.get_peft_model(model, cls(**kwargs))
    return wrapped.get_nb_trainable_parameters()


@pytest.mark.parametrize(("model_name", "adapter"), CASES, ids=[f"{m}-{i}" for i, (m, _) in enumerate(CASES)])
def test_count_equals_peft(model_name: str, adapter: AdapterSpec) -> None:
    anatomy = load_anatomy(resolve_source(model_name))
    ours = count_params(anatomy, adapter)
    meta = build_meta_model(read_config(resolve_source(model_name)))
    assert peft_counts(meta, ours.peft_config, adapter.method) == (ours.trainable_params, ours.all_params)


def test_parity_table_is_large_and_covers_every_catalog_family() -> None:
    from loratune.models import catalog_names

    assert len(CASES) >= 30
    families = {read_config(resolve_source(n))["model_type"] for n in catalog_names()}
    assert families <= {read_config(resolve_source(m))["model_type"] for m, _ in CASES}
    assert {a.method for _, a in CASES} >= {"lora", "dora"}


def test_seed_gpt2_example_is_811008() -> None:
    """The seed guide's figure (§5.1): GPT-2, r=8, ``c_attn, c_proj`` → 811,008 (0.65 %)."""
    b = count_params(load_anatomy(resolve_source("gpt2")), spec("c_attn,c_proj"))
    assert b.trainable_params == 811_008
    assert round(b.trainable_percent, 2) == 0.65
    # 12 c_attn (768→2304) + 12 attention c_proj (768→768) + 12 MLP c_proj (3072→768)
    assert b.trainable_params == 12 * 8 * (768 + 2304) + 12 * 8 * (768 + 768) + 12 * 8 * (3072 + 768)
    assert any("c_proj" in w.message and "different roles" in w.message for w in b.warnings)


# AdaLoRA: PEFT leaves its frozen ``ranknum`` scalars trainable when moved to the meta device, so
# its parity is checked on real (small) weights: tiny random models and SmolLM2-sized shapes.
def _tiny(tiny_config, kind: str):
    import torch
    from transformers import BertModel, GPT2LMHeadModel, LlamaForCausalLM

    torch.manual_seed(0)
    model_class = {"llama": LlamaForCausalLM, "gpt2": GPT2LMHeadModel, "bert": BertModel}[kind]
    return model_class(tiny_config(kind, **({"n_positions": 64} if kind == "gpt2" else {})))


@pytest.mark.parametrize(
    ("kind", "adapter"),
    [
        ("llama", spec("q_proj,v_proj", r=12, method="adalora", target_r=8)),
        ("llama", spec("all-linear", r=6, method="adalora", target_r=4)),
        ("gpt2", spec("c_attn,c_proj", r=8, method="adalora", target_r=4)),
        ("bert", spec("query,key,value", r=4, method="adalora", target_r=2)),
        ("llama", spec("mlp", r=8, method="adalora", target_r=4, layers_to_transform=(1,))),
    ],
)
def test_adalora_count_equals_peft(tiny_config, kind: str, adapter: AdapterSpec) -> None:
    model = _tiny(tiny_config, kind)
    anatomy = anatomy_from_model(model, source=kind)
    ours = count_params(anatomy, adapter)
    assert peft_counts(model, ours.peft_config, "adalora") == (ours.trainable_params, ours.all_params)
    # r·(in+out) + r per module (A, B and the singular values E)
    assert ours.trainable_params == sum(
        adapter.r * (m.in_features + m.out_features + 1) for m in resolve(anatomy, adapter.targets).modules
    )
