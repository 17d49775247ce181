"""BERT's module names: the bare ``dense`` is ambiguous (like GPT-2's ``c_proj``) and the warning names
each role in a form that matches exactly it — a regex where a suffix would pin one layer."""

from __future__ import annotations

from loratune.anatomy.targets import TargetSpec, anatomy_warnings, parse_targets, resolve
from loratune.models import load_anatomy, resolve_source


def test_bare_dense_warned_with_exact_alternatives() -> None:
    anatomy = load_anatomy(resolve_source("bert-base-uncased"))
    (w,) = [w for w in anatomy_warnings(anatomy) if w.target == "dense"]
    assert w.kind == "ambiguous_suffix"
    assert "attn_o → attention.output.dense" in w.message and "mlp_up → intermediate.dense" in w.message
    rx = r"re:bert\.encoder\.layer\.\d+\.output\.dense"
    assert f"mlp_down → {rx}" in w.message
    # each suggested form adapts exactly its role's 12 modules
    mlp_down = resolve(anatomy, TargetSpec(parse_targets(rx))).modules
    assert len(mlp_down) == 12 and {m.role for m in mlp_down} == {"mlp_down"}
    attn_o = resolve(anatomy, TargetSpec(("attention.output.dense",))).modules
    assert len(attn_o) == 12 and {m.role for m in attn_o} == {"attn_o"}
    # the seed's literal list query,key,value,dense warns at budget time too
    res = resolve(anatomy, TargetSpec(("query", "key", "value", "dense")))
    assert any(x.kind == "mixed_roles" and x.target == "dense" for x in res.warnings)
