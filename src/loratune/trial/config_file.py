"""Read a trial config file — ``recommend``'s JSON: ``{"config": {PEFT kwargs}, "training": {...}}``.

``config`` uses PEFT's own names (``r``, ``lora_alpha``, ``target_modules``, ``use_dora``,
``init_r``/``target_r`` for AdaLoRA, ``layers_to_transform``…) so the same file can be handed to
``peft.LoraConfig(**config)``. Keys loratune does not model (``init_lora_weights``, AdaLoRA's
``tinit``…) are passed through to PEFT unchanged.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from loratune.budget.spec import peft_fields
from loratune.errors import ConfigError
from loratune.paths import read_json_file

# PEFT keys that never reach the config (they describe the run, not the adapter).
_DROPPED = {"task_type", "peft_type", "base_model_name_or_path", "revision", "inference_mode", "bias"}
# recommend/Trainer spellings → TrainSettings fields.
TRAINING_ALIASES = {
    "steps": "max_steps",
    "max_steps": "max_steps",
    "epochs": "epochs",
    "num_train_epochs": "epochs",
    "learning_rate": "learning_rate",
    "lr": "learning_rate",
    "batch_size": "batch_size",
    "per_device_train_batch_size": "batch_size",
    "grad_accum": "grad_accum",
    "gradient_accumulation_steps": "grad_accum",
    "warmup_ratio": "warmup_ratio",
    "scheduler": "scheduler",
    "lr_scheduler_type": "scheduler",
    "weight_decay": "weight_decay",
    "max_grad_norm": "max_grad_norm",
    "max_length": "max_length",
    "max_seq_length": "max_length",
    "gradient_checkpointing": "grad_checkpointing",
    "grad_checkpointing": "grad_checkpointing",
    "seed": "seed",
    "compute_dtype": "compute_dtype",
    "eval_every": "eval_every",
    "seq_len": "max_length",
    "dtype": "compute_dtype",
}
# Keys recommend writes that describe, not set, the run (derived values) — read and ignored.
TRAINING_INFO = {"effective_batch_size", "steps_per_epoch"}
# Keys a trial can only honour with one value.
TRAINING_FIXED = {"optimizer": ("adamw", "adamw_torch", "adamw_torch_fused"), "quantization": ("none",)}


# Top-level keys of the file: the two that set the run, and what `recommend --json` writes beside them
# (read and ignored: they describe the recommendation).
CONFIG_SECTIONS = ("config", "training")
RECOMMEND_INFO = frozenset(
    {"model", "rules", "method", "task", "explanations", "trainable_params", "trainable_percent", "memory"}
    | {"fit_steps", "warnings", "warning_kinds"}
)
# Every LoraConfig / AdaLoraConfig field of the PEFT loratune is tested against (tests/trial/
# test_config_file.py compares this with PEFT's dataclasses), plus loratune's own ``method``. Kept as
# data so the file is checked before torch (which PEFT imports) is.
PEFT_KEYS = frozenset(
    {"alora_invocation_tokens", "alpha_pattern", "arrow_config", "auto_mapping", "base_model_name_or_path"}
    | {"bias", "corda_config", "ensure_weight_tying", "eva_config", "exclude_modules", "fan_in_fan_out"}
    | {"inference_mode", "init_lora_weights", "kasa_config", "layer_replication", "layers_pattern"}
    | {"layers_to_transform", "loftq_config", "lora_alpha", "lora_bias", "lora_dropout", "lora_ga_config"}
    | {"megatron_config", "megatron_core", "modules_to_save", "monteclora_config", "peft_type", "peft_version"}
    | {"qalora_group_size", "r", "rank_pattern", "revision", "runtime_config", "target_modules"}
    | {"target_parameters", "task_type", "trainable_token_indices", "use_bdlora", "use_dora", "use_qalora"}
    | {"use_rslora", "velora_config"}
    # AdaLoraConfig's own
    | {"beta1", "beta2", "deltaT", "init_r", "orth_reg_weight", "target_r", "tfinal", "tinit", "total_step"}
    | {"method"}
)
# Value checks of the adapter keys loratune reads itself: (kind, low, high, low bound open?).
_INT, _NUM, _BOOL = "an integer", "a number", "true or false"
MAX_RANK = 65536  # far above any hidden size loratune trains; stops a typo from allocating terabytes
ADAPTER_NUMBERS: dict[str, tuple[str, float, float, bool]] = {
    "r": (_INT, 1, MAX_RANK, False),
    "init_r": (_INT, 1, MAX_RANK, False),
    "target_r": (_INT, 1, MAX_RANK, False),
    "lora_alpha": (_NUM, 0.0, math.inf, True),
    "lora_dropout": (_NUM, 0.0, 1.0, False),  # [0, 1): checked below
}
_ADAPTER_BOOLS = ("use_dora", "use_rslora", "lora_bias")
_FILE_FIX = 'expected {"config": {...PEFT kwargs}, "training": {...}} as `loratune recommend --json` writes it'


def read_config_file(path: Path) -> dict[str, Any]:
    """The parsed file, every part checked: JSON, object shape, known keys, finite numbers, the
    adapter values' types and ranges, the training values (through :class:`TrainSettings`).
    Every problem is one :class:`ConfigError` naming the file and the place (``config.r``)."""
    path = Path(path)
    data = read_json_file(path, what="the --config file", fix="pass the JSON written by `loratune recommend --json`")
    if not isinstance(data, dict):
        raise ConfigError(f"the --config file {path} holds {_kind(data)}, not an object", _FILE_FIX)
    unknown = sorted(k for k in data if k not in CONFIG_SECTIONS and k not in RECOMMEND_INFO)
    if unknown:
        raise ConfigError(
            f"the --config file {path} has unknown key(s) {', '.join(map(repr, unknown))}",
            f"use 'config' and 'training' ({_FILE_FIX})",
        )
    for section in CONFIG_SECTIONS:
        value = data.get(section)
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"the --config file {path}: '{section}' is {_kind(value)}, not an object", _FILE_FIX)
    bad = _non_finite({s: data.get(s) for s in CONFIG_SECTIONS})
    if bad:
        raise ConfigError(f"the --config file {path}: {bad} is not a finite number", "use a finite value")
    where = f"the --config file {path}"
    config = data.get("config") or {}
    check_adapter_values(config, where=f"{where}: config.")
    unknown = sorted(k for k in config if k not in PEFT_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) in 'config': {', '.join(map(repr, unknown))}",
            "use PEFT LoraConfig/AdaLoraConfig names (r, lora_alpha, target_modules, ...)",
        )
    peft_type = config.get("peft_type")
    if peft_type is not None and str(peft_type).upper() not in ("LORA", "ADALORA"):
        raise ConfigError(
            f"{where}: config.peft_type {peft_type!r} is not an adapter loratune trains", "use LORA or ADALORA"
        )
    try:
        training_fields(data.get("training") or {}, check=True)
    except ConfigError as e:
        raise ConfigError(f"{where}: 'training': {e.message}", e.hint) from None
    return data


def check_adapter_values(kw: dict[str, Any], *, where: str = "", flags: dict[str, str] | None = None) -> None:
    """Types and ranges of the adapter values loratune reads (PEFT names). ``where`` prefixes the key in
    the message (``"the --config file x.json: config."``); ``flags`` names a key by the flag that set
    it (``{"r": "--r"}``)."""
    for key, (kind, low, high, low_open) in ADAPTER_NUMBERS.items():
        value = kw.get(key)
        if value is None:
            continue
        if flags and key in flags:
            name = f"{flags[key]} ({key})"
            _check_number_key(value, name, key, kind, low, high, low_open, f"use e.g. {flags[key]} {_EXAMPLE[key]}")
            continue
        _check_number_key(value, f"{where}{key}", key, kind, low, high, low_open)
    for key in _ADAPTER_BOOLS:
        if key in kw and not isinstance(kw[key], bool):
            raise ConfigError(f"{where}{key} must be true or false, got {kw[key]!r}", f"e.g. {key}=false")
    targets = kw.get("target_modules")
    if targets is not None and not (
        isinstance(targets, str) or (isinstance(targets, list) and all(isinstance(t, str) for t in targets))
    ):
        raise ConfigError(
            f"{where}target_modules must be a list of module names (or one regex string), got {targets!r}",
            'e.g. target_modules=["q_proj", "v_proj"]',
        )
    for key in ("exclude_modules", "modules_to_save"):
        names = kw.get(key)
        if names is not None and not (isinstance(names, list) and all(isinstance(t, str) for t in names)):
            raise ConfigError(f"{where}{key} must be a list of module names, got {names!r}", f'e.g. {key}=["lm_head"]')
    layers = kw.get("layers_to_transform")
    if layers is not None:
        items = [layers] if isinstance(layers, int) and not isinstance(layers, bool) else layers
        if not (isinstance(items, list) and all(_is_int(x) and x >= 0 for x in items)):
            raise ConfigError(
                f"{where}layers_to_transform must be a layer index or a list of them (>= 0), got {layers!r}",
                "e.g. layers_to_transform=[0, 1, 2]",
            )
    for key, kind in (("rank_pattern", _INT), ("alpha_pattern", _NUM)):
        pattern = kw.get(key)
        if pattern is None:
            continue
        if not isinstance(pattern, dict):
            raise ConfigError(f"{where}{key} must be an object of module name → value, got {pattern!r}", "fix it")
        for name, v in pattern.items():
            valid = _is_int(v) if kind == _INT else _is_number(v)
            if not valid or not v > 0 or (kind == _INT and v > MAX_RANK):
                raise ConfigError(f"{where}{key}[{name!r}] must be a positive {kind[3:]}, got {v!r}", "fix it")


def _check_number_key(
    value: Any, name: str, key: str, kind: str, low: float, high: float, low_open: bool, fix: str = ""
) -> None:
    fix = fix or f"use e.g. {key}={_EXAMPLE[key]}"
    if isinstance(value, bool) or not isinstance(value, int if kind == _INT else (int, float)):
        raise ConfigError(f"{name} must be {kind}, got {value!r}", fix)
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}", fix)
    high_open = key == "lora_dropout"  # a probability below 1
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        span = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"{name} must be in {span}, got {value!r}", fix)


_EXAMPLE = {"r": "8", "init_r": "12", "target_r": "8", "lora_alpha": "16", "lora_dropout": "0.05"}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


def _non_finite(value: Any, place: str = "") -> str | None:
    """The place (``training.learning_rate``) of the first NaN or ±Infinity in ``value``, if any."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{place} = {value}"
    if isinstance(value, dict):
        for k, v in value.items():
            found = _non_finite(v, f"{place}.{k}" if place else str(k))
            if found:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _non_finite(v, f"{place}[{i}]")
            if found:
                return found
    return None


def adapter_fields(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split PEFT kwargs into AdapterSpec keyword values (only those the file names, so flags can go on
    top) and pass-through PEFT extras — by :func:`loratune.budget.spec.peft_fields`, the one reader of
    PEFT kwargs; the keys that describe the run, not the adapter (``_DROPPED``), are left out."""
    spec, extra = peft_fields(config)
    return spec, {k: v for k, v in extra.items() if k not in _DROPPED}


def training_fields(training: dict[str, Any], *, check: bool = False) -> dict[str, Any]:
    """``training`` section → TrainSettings keyword values (unknown keys are an error). ``check``:
    also build :class:`TrainSettings` from them alone, so a bad value is refused by its one rule."""
    out: dict[str, Any] = {}
    unknown = []
    for key, value in training.items():
        if value is None or key in TRAINING_INFO:
            continue
        if key in TRAINING_FIXED:
            if str(value).lower() not in TRAINING_FIXED[key]:
                raise ConfigError(
                    f"training {key}={value!r} is not supported by loratune trials",
                    f"use {key}={TRAINING_FIXED[key][0]!r} (trials run AdamW on an unquantized base)",
                )
        elif key in TRAINING_ALIASES:
            out[TRAINING_ALIASES[key]] = value
        else:
            unknown.append(key)
    if unknown:
        raise ConfigError(
            f"unknown key(s) in 'training': {', '.join(sorted(unknown))}",
            f"known: {', '.join(sorted(TRAINING_ALIASES))}",
        )
    if check:
        from loratune.trial.precision import resolve_compute_dtype
        from loratune.trial.types import TrainSettings

        checked = dict(out)
        if isinstance(checked.get("compute_dtype"), str):
            checked["compute_dtype"] = resolve_compute_dtype(checked["compute_dtype"], "cpu")
        TrainSettings(**checked)
    return out
