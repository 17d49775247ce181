"""Roles per family: names, shapes and the warnings inspect shows."""

from __future__ import annotations

from collections import Counter

import pytest

from loratune.anatomy.roles import role_of
from loratune.anatomy.targets import anatomy_warnings
from loratune.models import load_anatomy, resolve_source


def roles_by_suffix(name: str) -> dict[tuple[str, str], int]:
    a = load_anatomy(resolve_source(name))
    return dict(Counter((m.suffix, m.role) for m in a.modules if m.kind != "embedding"))


def test_smollm2_has_30_layers_with_seven_roles() -> None:
    a = load_anatomy(resolve_source("smollm2-135m"))
    per_layer = a.roles_per_layer()
    assert len(per_layer) == 30 and a.num_layers == 30
    seven = {"attn_q", "attn_k", "attn_v", "attn_o", "mlp_gate", "mlp_up", "mlp_down"}
    assert all(r == seven for r in per_layer.values())
    k = next(m for m in a.modules if m.suffix == "k_proj")
    assert (k.in_features, k.out_features) == (576, 192)  # 3 kv heads × 64


def test_gpt2_roles_and_shapes() -> None:
    assert roles_by_suffix("gpt2") == {
        ("c_attn", "attn_qkv"): 12,
        ("c_proj", "attn_o"): 12,
        ("c_fc", "mlp_up"): 12,
        ("c_proj", "mlp_down"): 12,
        ("lm_head", "lm_head"): 1,
    }
    a = load_anatomy(resolve_source("gpt2"))
    c_attn = next(m for m in a.modules if m.suffix == "c_attn")
    assert (c_attn.in_features, c_attn.out_features, c_attn.kind) == (768, 2304, "conv1d")


def test_bert_dense_roles_depend_on_parent() -> None:
    got = roles_by_suffix("bert-base-uncased")
    assert got[("dense", "attn_o")] == 12
    assert got[("dense", "mlp_up")] == 12
    assert got[("dense", "mlp_down")] == 12
    assert got[("decoder", "lm_head")] == 1


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("falcon-7b", {"attn_qkv", "attn_o", "mlp_up", "mlp_down", "lm_head"}),
        ("phi-3-mini", {"attn_qkv", "attn_o", "mlp_up", "mlp_down", "lm_head"}),
        ("t5-base", {"attn_q", "attn_k", "attn_v", "attn_o", "mlp_up", "mlp_down", "lm_head"}),
        ("llama-2-70b", {"attn_q", "attn_k", "attn_v", "attn_o", "mlp_gate", "mlp_up", "mlp_down", "lm_head"}),
    ],
)
def test_every_linear_has_a_known_role(name: str, expected: set[str]) -> None:
    a = load_anatomy(resolve_source(name))
    assert {m.role for m in a.modules if m.kind != "embedding"} == expected


def test_role_of_edge_cases() -> None:
    assert role_of("model.layers.0.self_attn.q_proj", "linear") == "attn_q"
    assert role_of("transformer.h.3.mlp.c_proj", "conv1d") == "mlp_down"
    assert role_of("transformer.h.3.attn.c_proj", "conv1d") == "attn_o"
    assert role_of("encoder.block.0.layer.1.DenseReluDense.wo", "linear") == "mlp_down"
    assert role_of("bert.pooler.dense", "linear") == "other"
    assert role_of("lm_head", "linear", is_output=True) == "lm_head"


def test_inspect_warnings() -> None:
    gpt2 = " ".join(w.message for w in anatomy_warnings(load_anatomy(resolve_source("gpt2"))))
    assert "'c_proj'" in gpt2 and "attn.c_proj" in gpt2 and "mlp.c_proj" in gpt2
    assert "fused q/k/v in 'c_attn'" in gpt2
    assert "tied" in gpt2
    llama = anatomy_warnings(load_anatomy(resolve_source("llama-2-7b")))
    assert llama == []  # distinct names, untied head: nothing to warn about
