"""What every exporter shares: reading the recommendation dict, comments, YAML."""

from __future__ import annotations

from typing import Any

import yaml

from loratune.errors import ConfigError


def method_of(config: dict[str, Any]) -> str:
    if "init_r" in config or "total_step" in config:
        return "adalora"
    return "dora" if config.get("use_dora") else "lora"


def parts(rec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, training) of a ``Recommendation.to_dict()`` (or any dict with those two keys)."""
    config, training = rec.get("config"), rec.get("training", {})
    if not isinstance(config, dict) or not isinstance(training, dict):
        raise ConfigError(
            "the recommendation has no 'config' mapping", "pass Recommendation.to_dict() (keys config and training)"
        )
    if "target_modules" not in config:
        raise ConfigError("the recommendation's config has no target_modules", "recommend a config first")
    return config, training


def no_adalora(config: dict[str, Any], fmt: str) -> None:
    if method_of(config) == "adalora":
        raise ConfigError(
            f"AdaLoRA cannot be expressed in {fmt}: only PEFT implements its rank schedule",
            "use --export peft or --export peft-python, or --method lora",
        )


def targets_list(config: dict[str, Any]) -> list[str] | str:
    t = config["target_modules"]
    return t if isinstance(t, str) else list(t)


def comment_block(lines: list[str]) -> str:
    return "".join(f"# {line}\n" for line in lines)


def to_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)


def check_keys(data: dict[str, Any], allowed: frozenset[str], fmt: str) -> None:
    """Every key we write must be one the target project defines (see each exporter's whitelist)."""
    unknown = sorted(set(data) - allowed)
    if unknown:  # a bug in loratune, not a user error
        raise AssertionError(f"{fmt} export wrote keys its schema does not define: {unknown}")
