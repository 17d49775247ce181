"""The adapter configuration loratune reasons about: a typed mirror of PEFT's LoraConfig/AdaLoraConfig.

Both directions live here: :meth:`AdapterSpec.peft_kwargs` writes PEFT keyword arguments and
:func:`peft_fields` / :func:`split_peft_kwargs` / :meth:`AdapterSpec.from_peft_kwargs` read them back
(``from_peft_kwargs(spec.peft_kwargs()) == spec``). Nothing else parses PEFT kwargs.
"""

from __future__ import annotations

import math
import re
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


# No model has a layer this wide; a larger rank is a typo or an overflow. Against a real model,
# budget.params.count_params refuses a rank above every adapted module's min(in, out).
MAX_RANK = 1 << 16


def check_rank(value: object, what: str, fix: str = "use e.g. --r 8 (ranks of 8–64 are usual)") -> None:
    """A rank: a whole number from 1 to :data:`MAX_RANK`. ``what`` names the field, ``fix`` the flag."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{what} must be a positive integer, got {value!r}", fix)
    if value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value}", fix)
    if value > MAX_RANK:
        raise ConfigError(f"{what} = {value} is beyond any model's layer width (at most {MAX_RANK:,})", fix)


def check_positive(value: object, what: str, fix: str) -> None:
    """A finite number > 0 (not nan, not inf, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{what} must be a number, got {value!r}", fix)
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{what} must be a finite number > 0, got {value!r}", fix)


def check_dropout(value: object, what: str) -> None:
    """A probability in [0, 1): PEFT's nn.Dropout(p) takes 1, but it zeroes every input."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"{what} must be a number in [0, 1), got {value!r}", "use e.g. --dropout 0.05")


def _pattern_key(key: object, what: str) -> None:
    # PEFT reads each key as a regex (peft/utils/other.py get_pattern_key: re.match).
    if not isinstance(key, str) or not key:
        raise ConfigError(f"{what} has an empty or non-text key {key!r}", "write it like q_proj=16")
    try:
        re.compile(key)
    except re.error as e:
        raise ConfigError(f"{what} key {key!r} is not a valid regex ({e})", "write a module name like q_proj") from None


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
        # Every value is checked here, once, whoever builds the spec (flags, a config file, a search):
        # the message names the PEFT field, the flag that sets it and the value received.
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}", f"use one of {', '.join(METHODS)}")
        check_rank(self.r, "r" if self.method != "adalora" else "init_r (AdaLoRA's r)")
        check_positive(self.alpha, "lora_alpha", "use e.g. --alpha 16 (2·r)")
        check_dropout(self.dropout, "lora_dropout")
        for name, flag in ((self.use_rslora, "use_rslora"), (self.lora_bias, "lora_bias")):
            if not isinstance(name, bool):
                raise ConfigError(f"{flag} must be true or false, got {name!r}", f"write {flag}: true or false")
        for k, v in self.rank_pattern.items():
            _pattern_key(k, "rank_pattern")
            check_rank(v, f"rank_pattern {k!r}", "use e.g. --rank-pattern q_proj=16")
        for k, a in self.alpha_pattern.items():
            _pattern_key(k, "alpha_pattern")
            check_positive(a, f"alpha_pattern {k!r}", "use e.g. --alpha-pattern q_proj=32")
        if self.use_rslora and (self.rank_pattern or self.alpha_pattern):
            raise ConfigError(
                "use_rslora cannot be combined with rank_pattern/alpha_pattern (PEFT refuses it)", "drop one"
            )
        if self.target_r is not None:
            if self.method != "adalora":
                raise ConfigError(
                    f"target_r = {self.target_r!r} applies to AdaLoRA only, not {self.method}",
                    "add --method adalora, or drop --target-r",
                )
            check_rank(self.target_r, "target_r", "use e.g. --target-r 4 (at most --r)")
            if self.target_r > self.r:
                raise ConfigError(
                    f"AdaLoRA target_r ({self.target_r}) exceeds init_r ({self.r})", "set --target-r <= --r"
                )

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


# Every field of peft.LoraConfig and peft.AdaLoraConfig (PEFT 0.21.2, dataclasses.fields; the test
# tests/budget/test_spec_validation.py compares it with the installed PEFT), plus loratune's ``method``.
PEFT_KEYS = frozenset(
    {
        "alora_invocation_tokens", "alpha_pattern", "arrow_config", "auto_mapping", "base_model_name_or_path",
        "bias", "corda_config", "ensure_weight_tying", "eva_config", "exclude_modules", "fan_in_fan_out",
        "inference_mode", "init_lora_weights", "kasa_config", "layer_replication", "layers_pattern",
        "layers_to_transform", "loftq_config", "lora_alpha", "lora_bias", "lora_dropout", "lora_ga_config",
        "megatron_config", "megatron_core", "modules_to_save", "monteclora_config", "peft_type", "peft_version",
        "qalora_group_size", "r", "rank_pattern", "revision", "runtime_config", "target_modules",
        "target_parameters", "task_type", "trainable_token_indices", "use_bdlora", "use_dora", "use_qalora",
        "use_rslora", "velora_config",
        # AdaLoraConfig's own
        "beta1", "beta2", "deltaT", "init_r", "orth_reg_weight", "target_r", "tfinal", "tinit", "total_step",
    }
)  # fmt: skip


def unknown_peft_keys(kw: Mapping[str, Any]) -> list[str]:
    """Keys of ``kw`` that are neither a PEFT LoraConfig/AdaLoraConfig field nor ``method``: a typo
    PEFT itself would refuse (``LoraConfig(**kw)`` raises TypeError), so a config file holding one is refused."""
    return sorted(str(k) for k in kw if k not in PEFT_KEYS and k != "method")


def check_peft_keys(kw: Mapping[str, Any], where: str, suggest: frozenset[str] = frozenset()) -> None:
    """Refuse the first unknown key of ``kw`` (see :func:`unknown_peft_keys`), naming ``where`` it was
    found and the closest real key (among PEFT's, ``method`` and ``suggest``)."""
    import difflib

    unknown = unknown_peft_keys(kw)
    if unknown:
        known = sorted(PEFT_KEYS | {"method"} | suggest)
        close = difflib.get_close_matches(unknown[0], known, n=1, cutoff=0.6)
        raise ConfigError(
            f"unknown key {unknown[0]!r} in {where}" + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""),
            f"did you mean {close[0]!r}?" if close else "use PEFT LoraConfig/AdaLoraConfig field names",
        )


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
    if value is None:
        return ()
    if not isinstance(value, (list, tuple, set, frozenset)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key} must be a list of module names, got {value!r}", f'write e.g. "{key}": ["q_proj"]')
    # PEFT's own configs hold sets (LoraConfig.__post_init__); sorted, so a read is deterministic.
    return tuple(sorted(value) if isinstance(value, (set, frozenset)) else value)


def _int(value: Any, key: str) -> int:
    """A whole number from a config (8 or 8.0; not "8", not 8.5, not true)."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be a whole number, got {value!r}", f'write e.g. "{key}": 8')
    return value


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key} must be a number, got {value!r}", f'write e.g. "{key}": 16')
    return float(value)


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}", f'write "{key}": true or false')
    return value


def _mapping(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{key} must be an object of module → value, got {value!r}", f'write "{key}": {{"q_proj": 16}}'
        )
    return value


def _targets(kw: Mapping[str, Any]) -> TargetSpec:
    t = kw["target_modules"]
    if isinstance(t, str):
        # A string is a regex to PEFT, except "all-linear" (peft/tuners/tuners_utils.py).
        tm: tuple[str, ...] | str = ALL_LINEAR if t.lower() == ALL_LINEAR else t
    else:
        tm = _names(t, "target_modules")
    layers = kw.get("layers_to_transform")
    if isinstance(layers, int) and not isinstance(layers, bool):
        layers = [layers]  # PEFT takes one int as a one-layer list
    if layers is not None and not isinstance(layers, (list, tuple)):
        raise ConfigError(
            f"layers_to_transform must be a list of layer indices, got {layers!r}",
            'write "layers_to_transform": [0, 1]',
        )
    pattern = kw.get("layers_pattern")
    if isinstance(pattern, str):
        patterns: tuple[str, ...] | None = (pattern,)
    else:
        patterns = _names(pattern, "layers_pattern") or None
    return TargetSpec(
        target_modules=tm,
        layers_to_transform=tuple(_int(x, "layers_to_transform") for x in layers) if layers is not None else None,
        layers_pattern=patterns,
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
    rank_key = "init_r" if adalora and "init_r" in kw else ("r" if "r" in kw else "init_r")
    if kw.get(rank_key) is not None:
        out["r"] = _int(kw[rank_key], rank_key)
    if kw.get("lora_alpha") is not None:
        out["alpha"] = _number(kw["lora_alpha"], "lora_alpha")
    if kw.get("lora_dropout") is not None:
        out["dropout"] = _number(kw["lora_dropout"], "lora_dropout")
    if adalora:
        if kw.get("target_r") is not None:
            out["target_r"] = _int(kw["target_r"], "target_r")
    else:
        for key in ("use_rslora", "lora_bias"):
            if key in kw:
                out[key] = _bool(kw[key], key)
        if kw.get("rank_pattern"):
            out["rank_pattern"] = {
                str(k): _int(v, f"rank_pattern {k!r}") for k, v in _mapping(kw["rank_pattern"], "rank_pattern").items()
            }
        if kw.get("alpha_pattern"):
            out["alpha_pattern"] = {
                str(k): _number(v, f"alpha_pattern {k!r}")
                for k, v in _mapping(kw["alpha_pattern"], "alpha_pattern").items()
            }
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
