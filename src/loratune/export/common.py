"""What every exporter shares: reading the recommendation into an :class:`AdapterSpec` (by
``budget.spec.split_peft_kwargs``, the one reader of PEFT kwargs), naming the base model the way a
training tool loads it, comments, YAML."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from loratune.budget.spec import AdapterSpec, split_peft_kwargs
from loratune.errors import ConfigError, ModelSourceError


@dataclass(frozen=True)
class BaseModelRef:
    """The base model as a training tool loads it. ``kind``: ``hub`` (a catalog entry, written as the
    Hub id its config was copied from), ``directory`` or ``gguf`` (the user's local path), ``given``
    (neither: written as given)."""

    ref: str
    kind: str
    catalog_name: str | None = None

    def comment(self) -> str:
        if self.kind == "hub":
            return f"base model: {self.ref} is the Hugging Face Hub id of loratune's catalog entry {self.catalog_name}"
        if self.kind == "directory":
            return f"base model: {self.ref} is the local model directory loratune read"
        if self.kind == "gguf":
            return (
                f"base model: {self.ref} is the local .gguf file loratune read; transformers-based tools need "
                "the original model directory or its Hub id"
            )
        return f"base model: {self.ref} as given (neither a loratune catalog name nor a local path)"


def base_model(model_name: str) -> BaseModelRef:
    """``llama-3.1-8b`` → ``meta-llama/Llama-3.1-8B``; a directory or .gguf → its absolute path."""
    from loratune.models.catalog import catalog_hub_id
    from loratune.models.source import resolve_source

    try:
        src = resolve_source(model_name)
    except ModelSourceError:
        return BaseModelRef(model_name, "given")
    if src.kind == "catalog":
        return BaseModelRef(catalog_hub_id(src.name), "hub", src.name)
    return BaseModelRef(str(src.path), src.kind)


@dataclass(frozen=True)
class ExportInput:
    """A recommendation as the exporters read it: the adapter, the PEFT keys AdapterSpec does not model
    (``bias``, ``task_type``, ``fan_in_fan_out``, AdaLoRA's schedule), the training values, the model."""

    spec: AdapterSpec
    extra: dict[str, Any]
    training: dict[str, Any]
    model: BaseModelRef

    @property
    def targets(self) -> list[str] | str:
        tm = self.spec.targets.target_modules
        return tm if isinstance(tm, str) else list(tm)

    @property
    def alpha(self) -> int | float:
        a = self.spec.alpha
        return int(a) if a == int(a) else a

    @property
    def four_bit(self) -> bool:
        return self.training.get("quantization") == "4bit"


def read(rec: dict[str, Any], model_name: str) -> ExportInput:
    """:class:`ExportInput` of a ``Recommendation.to_dict()`` (or any dict with ``config`` and ``training``)."""
    config, training = rec.get("config"), rec.get("training") or {}
    if not isinstance(config, dict) or not isinstance(training, dict):
        raise ConfigError(
            "the recommendation has no 'config' mapping", "pass Recommendation.to_dict() (keys config and training)"
        )
    if "target_modules" not in config:
        raise ConfigError("the recommendation's config has no target_modules", "recommend a config first")
    spec, extra = split_peft_kwargs(config)
    return ExportInput(spec, extra, training, base_model(model_name))


def no_adalora(x: ExportInput, fmt: str) -> None:
    if x.spec.method == "adalora":
        raise ConfigError(
            f"AdaLoRA cannot be expressed in {fmt}: only PEFT implements its rank schedule",
            "use --export peft or --export peft-python, or --method lora",
        )


def int_alpha(x: ExportInput, fmt: str) -> int:
    """Axolotl and LLaMA-Factory type lora_alpha as an int."""
    if x.spec.alpha != int(x.spec.alpha):
        raise ConfigError(
            f"{fmt} takes an integer lora_alpha, the config has {x.spec.alpha:g}",
            "recommend with an integer alpha, or export to peft",
        )
    return int(x.spec.alpha)


def cannot_express(x: ExportInput, fmt: str, *, layers: bool, exclude: bool, patterns: bool, bias: bool) -> list[str]:
    """One ``CANNOT EXPRESS`` note per adapter setting the format has no key for."""
    t, s = x.spec.targets, x.spec
    notes = []
    if layers and t.layers_to_transform is not None:
        notes.append(f"CANNOT EXPRESS layers_to_transform={list(t.layers_to_transform)}: {fmt} adapts every layer")
    if exclude and t.exclude_modules:
        notes.append(f"CANNOT EXPRESS exclude_modules={list(t.exclude_modules)}: {fmt} has no exclude list")
    if patterns and (s.rank_pattern or s.alpha_pattern):
        notes.append(f"CANNOT EXPRESS rank_pattern/alpha_pattern: {fmt} takes one r and one alpha")
    if bias and s.lora_bias:
        notes.append(f"CANNOT EXPRESS lora_bias=True: {fmt} has no LoRA-B bias switch")
    return notes


def comment_block(lines: list[str]) -> str:
    return "".join(f"# {line}\n" for line in lines)


def to_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)


def check_keys(data: dict[str, Any], allowed: frozenset[str], fmt: str) -> None:
    """Every key we write must be one the target project defines (see each exporter's whitelist)."""
    unknown = sorted(set(data) - allowed)
    if unknown:  # a bug in loratune, not a user error
        raise AssertionError(f"{fmt} export wrote keys its schema does not define: {unknown}")
