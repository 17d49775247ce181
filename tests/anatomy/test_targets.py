"""Target resolution follows PEFT exactly, and refuses what PEFT would silently ignore."""

from __future__ import annotations

import pytest

from loratune.anatomy.targets import TargetSpec, expand_shorthand, parse_targets, resolve
from loratune.errors import ConfigError, TargetError
from loratune.models import load_anatomy, resolve_source
from loratune.units import parse_int_list


@pytest.fixture(scope="module")
def gpt2():
    return load_anatomy(resolve_source("gpt2"))


@pytest.fixture(scope="module")
def llama():
    return load_anatomy(resolve_source("llama-2-7b"))


def test_bare_c_proj_hits_both_roles(gpt2) -> None:
    res = resolve(gpt2, TargetSpec(("c_proj",)))
    assert {m.role for m in res.modules} == {"attn_o", "mlp_down"}
    assert len(res.modules) == 24
    assert any("different roles" in w.message for w in res.warnings)


def test_attention_shorthand_uses_longer_suffix_on_gpt2(gpt2) -> None:
    assert expand_shorthand(gpt2, "attention") == ["c_attn", "attn.c_proj"]
    res = resolve(gpt2, TargetSpec("attention"))
    assert {m.role for m in res.modules} == {"attn_qkv", "attn_o"} and len(res.modules) == 24


def test_qv_on_fused_model_is_an_error(gpt2) -> None:
    with pytest.raises(TargetError, match="fuses q, k and v"):
        resolve(gpt2, TargetSpec("qv"))


def test_shorthands_on_llama(llama) -> None:
    assert expand_shorthand(llama, "qv") == ["q_proj", "v_proj"]
    assert expand_shorthand(llama, "mlp") == ["down_proj", "gate_proj", "up_proj"]
    res = resolve(llama, TargetSpec(("attention", "mlp")))
    assert len(res.modules) == 32 * 7


def test_all_linear_excludes_lm_head(llama) -> None:
    res = resolve(llama, TargetSpec("all-linear"))
    assert len(res.modules) == 32 * 7
    assert "lm_head" not in {m.name for m in res.modules}


def test_layers_to_transform_and_pattern(llama) -> None:
    res = resolve(llama, TargetSpec(("q_proj",), layers_to_transform=(0, 31), layers_pattern=("layers",)))
    assert [m.layer for m in res.modules] == [0, 31]
    with pytest.raises(TargetError, match="layers"):
        resolve(llama, TargetSpec(("q_proj",), layers_to_transform=(40,)))


def test_all_linear_with_layers_becomes_explicit_names(gpt2) -> None:
    res = resolve(gpt2, TargetSpec("all-linear", layers_to_transform=(0,)))
    assert res.peft_target_modules == ["c_attn", "c_proj", "c_fc"]  # both c_proj are wanted: bare name is exact
    assert len(res.modules) == 4


def test_regex_with_layers_is_refused(llama) -> None:
    with pytest.raises(TargetError, match="regex"):
        resolve(llama, TargetSpec(r".*q_proj", layers_to_transform=(1,)))


def test_regex_fullmatch(llama) -> None:
    res = resolve(llama, TargetSpec(parse_targets(r"re:.*\.1\.self_attn\.(q|v)_proj")))
    assert [m.name for m in res.modules] == ["model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"]
    with pytest.raises(TargetError, match="matches no"):
        resolve(llama, TargetSpec("q_proj"))  # a bare name as regex must match a full name


def test_unknown_name_suggests_closest(llama) -> None:
    with pytest.raises(TargetError) as e:
        resolve(llama, TargetSpec(("q_prj",)))
    assert "q_proj" in e.value.one_line()


def test_container_name_is_explained(gpt2) -> None:
    with pytest.raises(TargetError, match="cannot wrap"):
        resolve(gpt2, TargetSpec(("ln_1",)))  # a LayerNorm


def test_embedding_needs_flag(gpt2) -> None:
    with pytest.raises(TargetError, match="embedding"):
        resolve(gpt2, TargetSpec(("wte",)))
    assert len(resolve(gpt2, TargetSpec(("wte",), include_embeddings=True)).modules) == 1


def test_exclude_and_modules_to_save(llama) -> None:
    res = resolve(llama, TargetSpec("all-linear", exclude_modules=("down_proj",)))
    assert len(res.modules) == 32 * 6


@pytest.mark.parametrize(
    ("text", "expected"),
    [("6-11", [6, 7, 8, 9, 10, 11]), ("0,2,4", [0, 2, 4]), ("10-", [10, 11]), ("3, 1-2", [1, 2, 3])],
)
def test_layer_ranges(text: str, expected: list[int]) -> None:
    assert parse_int_list(text, what="layer range", upper=12) == expected


@pytest.mark.parametrize("text", ["11-6", "x", "", "5-20"])
def test_bad_layer_ranges(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_int_list(text, what="layer range", upper=12)


def test_warnings_are_typed_gpt2_c_proj_mixed_roles(gpt2) -> None:
    res = resolve(gpt2, TargetSpec(("c_attn", "c_proj")))
    kinds = [w.kind for w in res.warnings]
    assert kinds == ["mixed_roles", "fused_qkv"]
    mixed = res.warnings[0]
    assert mixed.target == "c_proj" and mixed.roles == ("attn_o", "mlp_down")
    assert res.warnings[1].target == "c_attn" and str(res.warnings[1]) == res.warnings[1].message


def test_tied_head_warning_is_typed(gpt2) -> None:
    res = resolve(gpt2, TargetSpec(("lm_head",)))
    assert [w.kind for w in res.warnings] == ["tied_head"] and res.warnings[0].target == "lm_head"


def test_anatomy_warnings_are_typed(gpt2, llama) -> None:
    from loratune.anatomy.targets import anatomy_warnings

    ws = anatomy_warnings(gpt2)
    assert [w.kind for w in ws] == ["ambiguous_suffix", "fused_qkv", "tied_head"]
    assert ws[0].target == "c_proj" and ws[0].roles == ("attn_o", "mlp_down")
    assert anatomy_warnings(llama) == []


def test_one_suffix_rule() -> None:
    from loratune.anatomy.targets import matches_suffix

    assert matches_suffix("transformer.h.0.attn.c_proj", "c_proj")
    assert matches_suffix("transformer.h.0.attn.c_proj", "attn.c_proj")
    assert matches_suffix("c_proj", "c_proj")
    assert not matches_suffix("transformer.h.0.attn.xc_proj", "c_proj")  # a whole segment, not a substring
    assert not matches_suffix("transformer.h.0.attn.c_proj", "h.0.attn")


def test_suffix_rule_is_written_once() -> None:
    """PEFT's ``name == t or name.endswith("." + t)`` lives in matches_suffix only."""
    import re
    from pathlib import Path

    src = Path(__file__).resolve().parents[2] / "src" / "loratune"
    pattern = re.compile(r"""endswith\(\s*["']\.["']\s*\+""")
    hits = [str(p.relative_to(src)) for p in src.rglob("*.py") if pattern.search(p.read_text())]
    assert hits == ["anatomy/targets.py"]
    assert len(pattern.findall((src / "anatomy" / "targets.py").read_text())) == 1


def test_one_layer_index_rule() -> None:
    from loratune.anatomy import extract, snapshot, targets

    assert extract.layer_index is targets.layer_index and snapshot.LAYER_INDEX_RE is targets.LAYER_INDEX_RE
    assert targets.layer_index("model.layers.12.self_attn.q_proj") == 12
    assert targets.layer_index("model.layers.12.self_attn.q_proj", ("layers",)) == 12
    assert targets.layer_index("lm_head") is None
