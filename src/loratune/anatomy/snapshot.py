"""A compact JSON form of an :class:`Anatomy`: per-layer modules stored once as ``…{i}…`` patterns.

The catalog ships one snapshot per model so that ``inspect``/``budget`` of a 70B model need neither
torch nor transformers (importing them alone takes seconds). ``tests/models/test_catalog.py``
rebuilds each catalog model on the meta device and checks the snapshot equals it.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from loratune.anatomy.extract import natural_key
from loratune.anatomy.targets import LAYER_INDEX_RE
from loratune.anatomy.types import AdaptableModule, Anatomy, ArchFacts

_ZERO_DEFAULT = ("attention_dropout", "hidden_dropout")


def _pattern(name: str) -> tuple[str, int | None]:
    m = LAYER_INDEX_RE.match(name)
    if not m:
        return name, None
    s, e = m.span("idx")
    return name[:s] + "{i}" + name[e:], int(m.group("idx"))


def _ranges(nums: list[int]) -> str:
    nums = sorted(nums)
    parts, start, prev = [], nums[0], nums[0]
    for n in nums[1:] + [None]:  # type: ignore[list-item]
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(f"{start}-{prev}" if prev != start else f"{start}")
        if n is not None:
            start = prev = n
    return ",".join(parts)


def _expand_ranges(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def _compress(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for e in entries:
        pattern, idx = _pattern(e["name"])
        attrs = {k: v for k, v in e.items() if k not in ("name", "layer")}
        key = (pattern, tuple(sorted(attrs.items())))
        g = groups.setdefault(key, {"name": pattern, **attrs, "layers": []})
        if idx is not None:
            g["layers"].append(idx)
    out = []
    for g in groups.values():
        layers = g.pop("layers")
        if layers:
            g["layers"] = _ranges(layers)
        out.append(g)
    return out


def _expand(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for g in groups:
        attrs = {k: v for k, v in g.items() if k not in ("name", "layers")}
        if "layers" in g:
            for i in _expand_ranges(g["layers"]):
                out.append({"name": g["name"].replace("{i}", str(i), 1), "layer": i, **attrs})
        else:
            out.append({"name": g["name"], "layer": None, **attrs})
    return out


def to_snapshot(anatomy: Anatomy) -> dict[str, Any]:
    mods = [asdict(m) for m in anatomy.modules]
    params = [{"name": k, "params": v} for k, v in anatomy.module_params.items()]
    return {
        "architecture": anatomy.architecture,
        "model_type": anatomy.model_type,
        "num_layers": anatomy.num_layers,
        "total_params": anatomy.total_params,
        "tied_embeddings": anatomy.tied_embeddings,
        "output_module": anatomy.output_module,
        # the encoder dropouts only where set: decoder snapshots keep their shape
        "facts": {k: v for k, v in asdict(anatomy.facts).items() if k not in _ZERO_DEFAULT or v},
        "modules": _compress(mods),
        "module_params": _compress(params),
        "container_names": anatomy.container_names,
    }


def from_snapshot(data: dict[str, Any], *, source: str) -> Anatomy:
    mods = [AdaptableModule(**e) for e in _expand(data["modules"])]
    mods.sort(key=lambda m: natural_key(m.name))
    params = {e["name"]: e["params"] for e in _expand(data["module_params"])}
    return Anatomy(
        source=source,
        architecture=data["architecture"],
        model_type=data["model_type"],
        num_layers=data["num_layers"],
        total_params=data["total_params"],
        modules=tuple(mods),
        facts=ArchFacts(**data["facts"]),
        tied_embeddings=data["tied_embeddings"],
        output_module=data["output_module"],
        module_params=params,
        container_names=dict(data["container_names"]),
    )
