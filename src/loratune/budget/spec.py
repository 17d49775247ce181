"""The adapter configuration loratune reasons about: a typed mirror of PEFT's LoraConfig/AdaLoraConfig."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loratune.anatomy.targets import TargetSpec
from loratune.errors import ConfigError

METHODS = ("lora", "dora", "adalora")


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

    def peft_kwargs(self, target_modules: list[str] | str) -> dict[str, Any]:
        """Keyword arguments for ``peft.LoraConfig`` (or ``AdaLoraConfig``) with these values."""
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
