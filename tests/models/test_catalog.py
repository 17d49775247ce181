"""The catalog: every shipped anatomy snapshot equals a fresh meta-device build of its config."""

from __future__ import annotations

import pytest

from loratune.anatomy.snapshot import from_snapshot, to_snapshot
from loratune.models import catalog_names, load_anatomy, read_config, resolve_source
from loratune.models.catalog import catalog_snapshot
from loratune.models.skeleton import anatomy_from_config

REQUIRED = {
    "gpt2",
    "gpt2-medium",
    "gpt2-large",
    "gpt2-xl",
    "llama-2-7b",
    "llama-2-13b",
    "llama-2-70b",
    "llama-3.1-8b",
    "mistral-7b",
    "qwen2.5-0.5b",
    "qwen2.5-7b",
    "qwen3-14b",
    "phi-3-mini",
    "falcon-7b",
    "bert-base-uncased",
    "t5-base",
    "smollm2-135m",
}

# Parameter counts published with these models (model cards / papers); the meta builds must agree.
PUBLISHED = {
    "gpt2": 124_439_808,
    "llama-2-7b": 6_738_415_616,
    "llama-2-70b": 68_976_648_192,
    "llama-3.1-8b": 8_030_261_248,
    "mistral-7b": 7_241_732_096,
    "smollm2-135m": 134_515_008,
    "t5-base": 222_903_552,
}


def test_catalog_has_the_required_names() -> None:
    assert set(catalog_names()) >= REQUIRED


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_snapshot_matches_meta_build(name: str) -> None:
    snap = catalog_snapshot(name)
    assert snap is not None, "run `python -m loratune.models.catalog` to regenerate snapshots"
    live = anatomy_from_config(read_config(resolve_source(name)), source=name)
    stored = from_snapshot(snap, source=name)
    assert stored == live
    assert stored.module_params == live.module_params
    assert stored.container_names == live.container_names


@pytest.mark.parametrize(("name", "params"), sorted(PUBLISHED.items()))
def test_total_params_match_published_figures(name: str, params: int) -> None:
    assert load_anatomy(resolve_source(name)).total_params == params


def test_snapshot_round_trip_is_compact() -> None:
    a = load_anatomy(resolve_source("llama-2-70b"))
    snap = to_snapshot(a)
    assert from_snapshot(snap, source="llama-2-70b") == a
    # 80 layers × 7 linear modules stored as 7 patterns (+ embeddings and head)
    assert len(a.modules) == 80 * 7 + 2
    assert len(snap["modules"]) == 9
