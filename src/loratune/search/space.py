"""What a search varies: an adapter ``Variant`` (r, alpha, modules, method...) and one training run of
it at a learning rate (``RunConfig``). Plain values, hashable, with a canonical hash for the cache."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from loratune.anatomy.targets import TargetSpec, parse_targets
from loratune.budget import METHODS, AdapterSpec
from loratune.errors import ConfigError, LoratuneError
from loratune.units import parse_int_list

# Named module sets a search moves between. "recommended" is whatever the advice stage chose; it is
# replaced by its concrete value before any run, so the cache never sees the word.
MODULE_SETS = ("attention", "qv", "mlp", "all", "all-linear")


@dataclass(frozen=True, order=True)
class Variant:
    """One adapter configuration. ``alpha`` is absolute (scaling = alpha / r, or alpha / sqrt(r) with rsLoRA)."""

    r: int
    alpha: float
    modules: str = "attention"
    method: str = "lora"
    dropout: float = 0.05
    use_rslora: bool = False
    layers: str | None = None  # None = every layer; "top-half" or a range like "15-29"

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ConfigError(f"rank must be >= 1, got {self.r}", "use e.g. r=8")
        if self.alpha <= 0:
            raise ConfigError(f"alpha must be positive, got {self.alpha}", "use e.g. alpha = 2*r")
        if self.method not in METHODS or self.method == "adalora":
            raise ConfigError(f"the search cannot vary method {self.method!r}", "use lora or dora")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}", "use e.g. 0.05")

    @property
    def scaling(self) -> float:
        # LoRA [2106.09685] scales BA by alpha/r; rsLoRA [2312.03732] by alpha/sqrt(r).
        return self.alpha / (self.r**0.5 if self.use_rslora else self.r)

    @property
    def alpha_ratio(self) -> float:
        return self.alpha / self.r

    def label(self) -> str:
        parts = [f"r={self.r}", f"α={self.alpha:g}", self.modules]
        if self.method != "lora":
            parts.append(self.method)
        if self.use_rslora:
            parts.append("rslora")
        if self.layers:
            parts.append(f"layers {self.layers}")
        if self.dropout != 0.05:
            parts.append(f"dropout {self.dropout:g}")
        return " ".join(parts)

    def with_(self, **changes: Any) -> Variant:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Variant:
        return cls(**{k: data[k] for k in ("r", "alpha", "modules", "method", "dropout", "use_rslora", "layers")})

    def layers_list(self, num_layers: int) -> tuple[int, ...] | None:
        if self.layers is None:
            return None
        if self.layers == "top-half":
            return tuple(range(num_layers // 2, num_layers))
        return tuple(parse_int_list(self.layers, what="layer range", upper=num_layers))

    def adapter_spec(self, num_layers: int) -> AdapterSpec:
        """The :class:`AdapterSpec` this variant trains (module shorthands resolved by ``anatomy.targets``)."""
        return AdapterSpec(
            targets=TargetSpec(
                target_modules=parse_targets(self.modules), layers_to_transform=self.layers_list(num_layers)
            ),
            r=self.r,
            alpha=float(self.alpha),
            method=self.method,
            dropout=self.dropout,
            use_rslora=self.use_rslora,
        )


@dataclass(frozen=True)
class RunConfig:
    """One training run: a variant at a learning rate, under fixed training settings."""

    variant: Variant
    learning_rate: float
    stage: str = ""  # which stage asked for it (not part of the identity)
    context: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def identity(self, fingerprint: str) -> dict[str, Any]:
        return {
            "variant": self.variant.to_dict(),
            "learning_rate": float(f"{self.learning_rate:.6g}"),
            "fp": fingerprint,
        }

    def key(self, fingerprint: str) -> str:
        """Hash of the canonical config + the fingerprint of everything else that shapes the result
        (model, data, training settings): identical keys never train twice."""
        canon = json.dumps(self.identity(fingerprint), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:20]


def fingerprint(parts: dict[str, Any]) -> str:
    """A stable hash of the run's fixed context (model, data files' content, training settings)."""
    canon = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def parse_module_sets(text: str) -> tuple[str, ...]:
    """``attention,all-linear,q_proj+v_proj`` → ("attention", "all-linear", "q_proj,v_proj").

    Sets are separated by commas; names inside one set are joined with ``+``.
    """
    sets = tuple(s.strip().replace("+", ",") for s in text.split(",") if s.strip())
    if not sets:
        raise ConfigError("no module sets given", f"use e.g. {','.join(MODULE_SETS[:2])} or q_proj+v_proj")
    return sets


def check_module_sets(anatomy: Any, module_sets: tuple[str, ...], *, top_half: bool = False) -> None:
    """Refuse a ``--modules`` set that matches nothing in ``anatomy`` (or that PEFT would refuse), before
    any run: each set is resolved exactly as its runs will be (``anatomy.targets``); cheap, needs no weights.
    ``top_half``: also check each set on the top half of the layers (``--try-layers``)."""
    from loratune.anatomy.targets import resolve

    for modules in module_sets:
        layers = (None, "top-half") if top_half else (None,)
        for layer in layers:
            try:
                resolve(
                    anatomy,
                    Variant(r=8, alpha=16.0, modules=modules, layers=layer).adapter_spec(anatomy.num_layers).targets,
                )
            except LoratuneError as e:
                shown = modules.replace(",", "+")
                where = " on the top half of the layers (--try-layers)" if layer else ""
                raise ConfigError(f"--modules {shown!r}{where}: {e.message}", _modules_hint(shown, e)) from None


def _modules_hint(shown: str, e: LoratuneError) -> str:
    """Did-you-mean for a module set: a named set first (``attnetion`` → attention), then module names."""
    import difflib

    hint = e.hint or ""
    if "matches no" not in e.message:  # a bad regex, a fused q/v, layers with a regex: the stage's own fix
        return hint
    close = difflib.get_close_matches(shown.lower(), MODULE_SETS, n=1, cutoff=0.6)
    sets = f"module sets: {', '.join(MODULE_SETS)}, or names joined with +"
    if close:
        return f"did you mean {close[0]}? ({sets})"
    if "did you mean" in hint:
        return hint
    return f"{sets}; {hint}" if hint else sets
