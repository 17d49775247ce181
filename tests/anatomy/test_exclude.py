"""An exclude_modules entry that excludes nothing is refused like a target that matches nothing."""

from __future__ import annotations

import pytest

from loratune.anatomy.targets import TargetSpec, resolve
from loratune.errors import TargetError
from loratune.models import load_anatomy, resolve_source


@pytest.fixture(scope="module")
def gpt2():
    return load_anatomy(resolve_source("gpt2"))


def test_exclude_matching_no_module_is_refused_with_did_you_mean(gpt2) -> None:
    with pytest.raises(TargetError) as e:
        resolve(gpt2, TargetSpec(("c_attn", "c_proj"), exclude_modules=("c_atn",)))
    assert "exclude 'c_atn' matches no module of gpt2" in e.value.message
    assert "did you mean c_attn" in (e.value.hint or "")


def test_exclude_of_an_untargeted_module_is_refused(gpt2) -> None:
    with pytest.raises(TargetError, match="matches none of the targeted modules"):
        resolve(gpt2, TargetSpec(("c_attn",), exclude_modules=("c_fc",)))


def test_exclude_that_hits_still_works(gpt2) -> None:
    res = resolve(gpt2, TargetSpec(("c_attn", "c_fc"), exclude_modules=("c_fc",)))
    assert {m.suffix for m in res.modules} == {"c_attn"}
