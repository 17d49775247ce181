"""The adapter configuration loratune reasons about: a typed mirror of PEFT's LoraConfig/AdaLoraConfig.

Both directions live here: :meth:`AdapterSpec.peft_kwargs` writes PEFT keyword arguments and
:func:`peft_fields` / :func:`split_peft_kwargs` / :meth:`AdapterSpec.from_peft_kwargs` read them back
(``from_peft_kwargs(spec.peft_kwargs()) == spec``). Nothing else parses PEFT kwargs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from loratune.anatomy.targets import ALL_LINEAR, TargetSpec
from loratune.errors import ConfigError

METHODS = ("lora", "dora", "adalora")

# PEFT's LoraConfig default rank (peft/tuners/lora/config.py, ``r: int = 8``).
DEFAULT_R = 8


def default_alpha(r: int) -> int:
    """The seed rule for lora_alpha when none is given: alpha = 2r, scaling alpha/r = 2.0
    (seed guide 000 §2.2 rule 1; 2405.09673 agrees). PEFT's own default would be a fixed 8."""
    return 2 * r


@dataclass(frozen=True)
class AdapterSpec:
    """r, alpha, method and targets. For AdaLoRA ``r`` is ``init_r`` (what PEFT allocates) and
    ``target_r`` the average rank its budget prunes down to."""

    targets: TargetSpec
    r: int = 8
    alpha: float = 16.0
    method: str = "lora"
    dropout: float = 0.05
    use_rslora: bool = False
    lora_bias: bool = False
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    target_r: int | None = None

    def __post_init__(self) -> None:
        if self.r <= 0:
            raise ConfigError(f"r must be a positive integer, got {self.r}", "use e.g. --r 8")
        if self.alpha <= 0:
            raise ConfigError(f"lora_alpha must be positive, got {self.alpha}", "use e.g. --alpha 16 (2·r)")
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}", f"use one of {', '.join(METHODS)}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.dropout}", "use e.g. 0.05")
        for k, v in self.rank_pattern.items():
            if v <= 0:
                raise ConfigError(f"rank_pattern {k!r} has rank {v}", "ranks must be positive")
        if self.use_rslora and (self.rank_pattern or self.alpha_pattern):
            raise ConfigError(
                "use_rslora cannot be combined with rank_pattern/alpha_pattern (PEFT refuses it)", "drop one"
            )
        if self.method == "adalora" and self.target_r is not None and self.target_r > self.r:
            raise ConfigError(f"AdaLoRA target_r ({self.target_r}) exceeds init_r ({self.r})", "set target_r <= r")

    @property
    def scaling(self) -> float:
        # LoRA [2106.09685] scales BA by alpha/r; rsLoRA [2312.03732] by alpha/sqrt(r).
        return self.alpha / (self.r**0.5 if self.use_rslora else self.r)

    def peft_kwargs(self, target_modules: list[str] | str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``peft.LoraConfig`` (or ``AdaLoraConfig``) with these values.

        ``target_modules``: the resolved PEFT names (``resolve(anatomy, spec.targets)``); None writes
        ``targets.target_modules`` as they are — right when they are PEFT names already (a spec read by
        :meth:`from_peft_kwargs`), not when they hold loratune shorthands such as ``attention``.
        Values equal to PEFT's defaults (``use_dora=False``...) are left out."""
        if target_modules is None:
            tm = self.targets.target_modules
            target_modules = tm if isinstance(tm, str) else list(tm)
        kw: dict[str, Any] = {
            "target_modules": target_modules,
            "lora_alpha": self.alpha if self.alpha != int(self.alpha) else int(self.alpha),
            "lora_dropout": self.dropout,
        }
        if self.targets.layers_to_transform is not None:
            kw["layers_to_transform"] = list(self.targets.layers_to_transform)
            if self.targets.layers_pattern:
                kw["layers_pattern"] = list(self.targets.layers_pattern)
        if self.targets.exclude_modules:
            kw["exclude_modules"] = list(self.targets.exclude_modules)
        if self.targets.modules_to_save:
            kw["modules_to_save"] = list(self.targets.modules_to_save)
        if self.method == "adalora":
            kw["init_r"] = self.r
            kw["target_r"] = self.target_r if self.target_r is not None else max(1, self.r // 2)
            return kw
        kw["r"] = self.r
        if self.method == "dora":
            kw["use_dora"] = True
        if self.use_rslora:
            kw["use_rslora"] = True
        if self.lora_bias:
            kw["lora_bias"] = True
        if self.rank_pattern:
            kw["rank_pattern"] = dict(self.rank_pattern)
        if self.alpha_pattern:
            kw["alpha_pattern"] = dict(self.alpha_pattern)
        return kw

    @classmethod
    def from_peft_kwargs(cls, kw: Mapping[str, Any], *, default_targets: TargetSpec | None = None) -> AdapterSpec:
        """The spec of PEFT ``LoraConfig``/``AdaLoraConfig`` kwargs — the inverse of :meth:`peft_kwargs`.
        Keys it does not model (``bias``, ``task_type``, AdaLoRA's schedule...) are ignored here; use
        :func:`split_peft_kwargs` to keep them."""
        return split_peft_kwargs(kw, default_targets=default_targets)[0]


# Keys loratune reads itself; for AdaLoRA use_rslora/lora_bias/rank_pattern/alpha_pattern pass through
# (AdaLoRA's layers ignore rsLoRA, and the rank_pattern PEFT saves for it holds rank masks, not ranks).
_TARGET_KEYS = frozenset(
    {"target_modules", "layers_to_transform", "layers_pattern", "exclude_modules", "modules_to_save"}
)
_LORA_KEYS = _TARGET_KEYS | {"method", "r", "lora_alpha", "lora_dropout", "use_dora", "use_rslora", "lora_bias"}
_LORA_KEYS |= {"rank_pattern", "alpha_pattern"}
# AdaLoraConfig inherits ``r`` and ``use_dora`` from LoraConfig; it ignores r and refuses DoRA.
_ADALORA_KEYS = _TARGET_KEYS | {"method", "init_r", "target_r", "r", "use_dora", "lora_alpha", "lora_dropout"}
# Any of these means AdaLoraConfig (peft/tuners/adalora/config.py).
_ADALORA_MARKS = ("init_r", "target_r", "total_step", "tinit", "tfinal", "deltaT")


def method_of(kw: Mapping[str, Any]) -> str:
    """lora, dora or adalora: loratune's own ``method`` key, else what the PEFT kwargs say."""
    method = str(kw.get("method") or "").lower()
    if method:
        if method not in METHODS:
            raise ConfigError(f"unknown method {method!r}", f"use one of {', '.join(METHODS)}")
        return method
    if str(kw.get("peft_type", "")).upper() == "ADALORA" or any(k in kw for k in _ADALORA_MARKS):
        return "adalora"
    return "dora" if kw.get("use_dora") else "lora"


def _names(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ConfigError(f"{key} as one string ({value!r}) is not supported", f"give {key} as a list of names")
    # PEFT's own configs hold sets (LoraConfig.__post_init__); sorted, so a read is deterministic.
    return tuple(
        sorted(str(v) for v in value) if isinstance(value, (set, frozenset)) else (str(v) for v in value or ())
    )


def _targets(kw: Mapping[str, Any]) -> TargetSpec:
    t = kw["target_modules"]
    if isinstance(t, str):
        # A string is a regex to PEFT, except "all-linear" (peft/tuners/tuners_utils.py).
        tm: tuple[str, ...] | str = ALL_LINEAR if t.lower() == ALL_LINEAR else t
    else:
        tm = _names(t, "target_modules")
    layers = kw.get("layers_to_transform")
    if isinstance(layers, int):
        layers = [layers]  # PEFT takes one int as a one-layer list
    pattern = kw.get("layers_pattern")
    return TargetSpec(
        target_modules=tm,
        layers_to_transform=tuple(int(x) for x in layers) if layers is not None else None,
        layers_pattern=(pattern,) if isinstance(pattern, str) else (tuple(pattern) if pattern else None),
        exclude_modules=_names(kw.get("exclude_modules"), "exclude_modules"),
        modules_to_save=_names(kw.get("modules_to_save"), "modules_to_save"),
    )


def peft_fields(kw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(AdapterSpec keyword values that ``kw`` names, the PEFT keys it does not model, unchanged).

    Only what ``kw`` holds is returned (``method`` always), so a caller can lay flags on top before
    building the spec; :func:`split_peft_kwargs` fills the defaults."""
    method = method_of(kw)
    adalora = method == "adalora"
    if adalora and kw.get("use_dora"):
        raise ConfigError("AdaLoRA cannot be combined with use_dora=True (PEFT refuses it)", "drop one")
    out: dict[str, Any] = {"method": method}
    rank = kw.get("init_r") if adalora and "init_r" in kw else kw.get("r", kw.get("init_r"))
    if rank is not None:
        out["r"] = int(rank)
    if kw.get("lora_alpha") is not None:
        out["alpha"] = float(kw["lora_alpha"])
    if kw.get("lora_dropout") is not None:
        out["dropout"] = float(kw["lora_dropout"])
    if adalora:
        if kw.get("target_r") is not None:
            out["target_r"] = int(kw["target_r"])
    else:
        for key in ("use_rslora", "lora_bias"):
            if key in kw:
                out[key] = bool(kw[key])
        if kw.get("rank_pattern"):
            out["rank_pattern"] = {str(k): int(v) for k, v in kw["rank_pattern"].items()}
        if kw.get("alpha_pattern"):
            out["alpha_pattern"] = {str(k): float(v) for k, v in kw["alpha_pattern"].items()}
    if kw.get("target_modules") is not None:
        out["targets"] = _targets(kw)
    consumed = _ADALORA_KEYS if adalora else _LORA_KEYS | ({"init_r"} if "r" not in kw else set())
    extra = {k: v for k, v in kw.items() if k not in consumed}
    return out, extra


def split_peft_kwargs(
    kw: Mapping[str, Any], *, default_targets: TargetSpec | None = None
) -> tuple[AdapterSpec, dict[str, Any]]:
    """(spec, PEFT keys it does not model) of ``LoraConfig``/``AdaLoraConfig`` kwargs, so that
    ``spec.peft_kwargs() | extra`` rebuilds ``kw`` (values equal to PEFT's defaults aside).

    Missing values: r → 8 (PEFT's default), lora_alpha → :func:`default_alpha` (the seed rule, not
    PEFT's 8), lora_dropout → AdapterSpec's 0.05, target_modules → ``default_targets`` or an error."""
    values, extra = peft_fields(kw)
    values.setdefault("r", DEFAULT_R)
    values.setdefault("alpha", float(default_alpha(values["r"])))
    if "targets" not in values:
        if default_targets is None:
            raise ConfigError("the PEFT config has no target_modules", "add target_modules (a list of module names)")
        values["targets"] = default_targets
    try:
        return AdapterSpec(**values), extra
    except TypeError as e:
        raise ConfigError(f"bad adapter config: {e}", "check the PEFT config keys") from None
