"""Every option of a search as one frozen, validated value (:class:`SearchConfig`), its JSON form (what
``search.json`` keeps for ``--resume``), and the study fingerprint: the one function that says which runs
may share a study (model, data, settings, trial code).
"""

from __future__ import annotations

import difflib
import hashlib
import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from loratune.errors import ConfigError
from loratune.search.objective import settings_identity
from loratune.search.space import fingerprint
from loratune.trial.types import TrainSettings

STRATEGIES = ("staged", "optuna")
RANKS = (2, 4, 8, 16, 32, 64, 128)
MAX_SEED = 2**32 - 1


def _help(text: str) -> Any:
    return {"help": text}


@dataclass(frozen=True)
class SearchConfig:
    """What ``loratune search`` runs; the CLI's options one to one (``--val-data`` is ``val_data``)."""

    model: str = field(metadata=_help("catalog name, model directory or .gguf file"))
    data: str = field(default="demo", metadata=_help("training data file, or `demo`"))
    val_data: str | None = field(default=None, metadata=_help("separate validation file (default: a 10 % split)"))
    strategy: str = field(default="staged", metadata=_help("staged or optuna"))
    steps: int = field(default=10, metadata=_help("optimizer steps per run"))
    batch_size: int = field(default=4, metadata=_help("micro-batch size per step"))
    max_length: int = field(default=128, metadata=_help("tokens per example"))
    val_examples: int = field(default=32, metadata=_help("validation examples used (fixed subset)"))
    lr: float | None = field(default=None, metadata=_help("base LR (default: the recommendation's)"))
    lr_runs: int = field(default=5, metadata=_help("cap on LR runs per variant (the sweep stops once bracketed)"))
    trials: int = field(default=20, metadata=_help("optuna: distinct runs"))
    pruner: str = field(default="halving", metadata=_help("optuna: halving, hyperband or none"))
    max_r: int = field(default=32, metadata=_help("highest rank tried"))
    modules: str = field(default="attention,all-linear", metadata=_help("module sets, comma-separated"))
    try_dora: bool = field(default=False, metadata=_help("also try DoRA"))
    try_layers: bool = field(default=False, metadata=_help("staged: also try the top half of layers"))
    cost: str = field(default="params", metadata=_help("what the knee minimises: params, memory or time"))
    tolerance: float = field(default=0.01, metadata=_help("knee: within this fraction of the best ppl"))
    max_forgetting: float | None = field(default=None, metadata=_help("rule out variants forgetting more"))
    reference: str | None = field(
        default=None, metadata=_help("reference text: demo, a file or none (default: demo with max_forgetting)")
    )
    export: str = field(default="peft,axolotl", metadata=_help("export formats, comma list, or none"))
    task: str | None = field(default=None, metadata=_help("task for the recommendation"))
    seed: int = field(default=0, metadata=_help("seed for the split, LoRA init and the sampler"))
    finalists: int = field(default=3, metadata=_help("variants re-run at growing lengths (0 = no ladder)"))
    max_final_steps: int | None = field(
        default=None, metadata=_help("steps of the ladder's top rung (default one epoch)")
    )
    train_final: bool = field(default=False, metadata=_help("train the pick and save the adapter"))
    final_steps: int | None = field(default=None, metadata=_help("steps of the final run (default 1 epoch)"))
    threads: int | None = field(default=None, metadata=_help("CPU threads for torch (default: measured)"))
    device: str = field(default="auto", metadata=_help("auto (CUDA when available), cpu, cuda or cuda:N"))
    quant: str = field(default="none", metadata=_help("base quantization: none, 8bit or 4bit (bitsandbytes)"))
    time_budget: float | None = field(
        default=None, metadata=_help("minutes: size steps, val examples and LR runs to end in about this")
    )
    task_type: str = field(default="auto", metadata=_help("causal-lm, seq-cls, or auto (from the data)"))
    metric: str = field(default="loss", metadata=_help("what the knee ranks by: loss, or accuracy / f1 (seq-cls)"))

    def __post_init__(self) -> None:
        _check_types(self, what="search option")
        if self.reference is None:  # forgetting needs reference text; otherwise skip its evaluation
            object.__setattr__(self, "reference", "demo" if self.max_forgetting is not None else "none")
        from loratune.search.knee import COSTS
        from loratune.search.optuna_strategy import PRUNERS

        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {self.strategy!r}", f"use one of {', '.join(STRATEGIES)}")
        if self.cost not in COSTS:
            raise ConfigError(f"unknown cost {self.cost!r}", f"use one of {', '.join(COSTS)}")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"unknown pruner {self.pruner!r}", f"use one of {', '.join(PRUNERS)}")
        for name in ("steps", "batch_size", "max_length", "val_examples", "lr_runs", "trials", "max_r"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{_flag(name)} must be >= 1, got {getattr(self, name)}", "use a positive integer")
        if self.finalists < 0:
            raise ConfigError(f"--finalists must be >= 0, got {self.finalists}", "use 0 (no ladder) or e.g. 3")
        for name in ("final_steps", "threads", "max_final_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{_flag(name)} must be >= 1, got {value}", "use a positive integer, or leave it out")
        if not 0 <= self.seed <= MAX_SEED:  # numpy's and Optuna's samplers take 32-bit seeds, torch 64-bit
            raise ConfigError(f"--seed must be in [0, {MAX_SEED}], got {str(self.seed)[:40]}", "use e.g. --seed 0")
        # Written as "not (x in range)" so that NaN, which fails every comparison, is refused too.
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"--lr must be a positive finite number, got {self.lr}", "use e.g. --lr 2e-4")
        if not 0 <= self.tolerance < 1:
            raise ConfigError(f"--tolerance must be in [0, 1), got {self.tolerance}", "use e.g. 0.01 (1 %)")
        if self.max_forgetting is not None and not (self.max_forgetting >= 0 and math.isfinite(self.max_forgetting)):
            raise ConfigError(
                f"--max-forgetting must be >= 0, got {self.max_forgetting}", "use a finite fraction, e.g. 0.05 (5 %)"
            )
        if self.max_forgetting is not None and self.reference == "none":
            raise ConfigError("--max-forgetting needs reference text", "pass --reference demo (or a file)")
        self.module_sets  # noqa: B018  (parsing is the check: a bad --modules fails before any model loads)
        from loratune.data.classification import TASK_TYPES
        from loratune.search.metric import check_metric

        check_metric(self.metric)
        if self.task_type not in TASK_TYPES:
            raise ConfigError(f"unknown --task-type {self.task_type!r}", f"use one of {', '.join(TASK_TYPES)}")
        if self.metric != "loss" and self.task_type == "causal-lm":
            raise ConfigError(f"--metric {self.metric} needs a classifier", "use --task-type seq-cls or --metric loss")
        if self.time_budget is not None and not (self.time_budget > 0 and math.isfinite(self.time_budget)):
            raise ConfigError(f"--time-budget must be positive minutes, got {self.time_budget}", "use e.g. 10")
        _check_exports(self.export)
        from loratune.models.quantized import check_quant
        from loratune.trial.device import check_device_syntax

        object.__setattr__(self, "device", check_device_syntax(self.device))  # torch-free; resolved at load
        check_quant(self.quant)

    # -- derived values ----------------------------------------------------------------------------
    @property
    def module_sets(self) -> tuple[str, ...]:
        from loratune.search.space import parse_module_sets

        return parse_module_sets(self.modules)

    def check_against(self, anatomy: Any) -> None:
        """What needs the model's anatomy (no weights): every module set must match something in it."""
        from loratune.search.space import check_module_sets

        check_module_sets(anatomy, self.module_sets, top_half=self.try_layers and self.strategy == "staged")

    @property
    def exports(self) -> list[str]:
        return _export_names(self.export)

    @property
    def eval_every(self) -> int | None:
        """Pruning needs a validation loss midway; otherwise only the end is evaluated."""
        return max(1, self.steps // 2) if self.strategy == "optuna" and self.pruner != "none" else None

    def ladder_top(self, n_train: int) -> int:
        """The ladder's top rung: ``--max-final-steps``, or one epoch of the training examples."""
        return self.max_final_steps or max(1, math.ceil(n_train / self.batch_size))

    def train_settings(self, learning_rate: float, compute_dtype: str, *, steps: int | None = None) -> TrainSettings:
        """The settings every run of this search trains with (the LR moves per run); ``steps``: a ladder
        rung's length instead of ``--steps`` (no midway evaluation there: nothing prunes a rung run)."""
        return TrainSettings(
            learning_rate=learning_rate,
            batch_size=self.batch_size,
            max_steps=steps or self.steps,
            max_length=self.max_length,
            warmup_ratio=0.1,
            seed=self.seed,
            compute_dtype=compute_dtype,
            eval_every=self.eval_every if steps is None else None,
        )

    # -- JSON --------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "search.json") -> SearchConfig:
        """The inverse of :meth:`to_dict`; refuses what it does not know, naming ``source``."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: options must be a JSON object, got {type(data).__name__}", _REWRITE)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown option(s) {', '.join(unknown)}", _REWRITE)
        if "model" not in data:
            raise ConfigError(f"{source}: no model option", _REWRITE)
        hints = typing.get_type_hints(cls)
        for name, value in data.items():
            if not _is_a(value, hints[name]):
                got = f"{type(value).__name__} {value!r:.40}"
                raise ConfigError(f"{source}: option {name} must be {_type_name(hints[name])}, got {got}", _REWRITE)
        try:
            return cls(**data)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e.message}", e.hint) from None


def _export_names(text: str) -> list[str]:
    return [e.strip() for e in text.split(",") if e.strip() and e.strip() != "none"]


def _check_exports(text: str) -> None:
    """Every --export name is a known format: checked here, not after the whole search has trained."""
    try:
        from loratune.export import FORMATS
    except ImportError:  # the export stage is optional for a search (final.write_outputs skips it too)
        return
    for name in _export_names(text):
        if name not in FORMATS:
            close = difflib.get_close_matches(name, FORMATS, n=1, cutoff=0.5)
            did = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(
                f"unknown export format {name!r}", f"{did}use a comma list of {', '.join(FORMATS)}, or none"
            )


_REWRITE = "start a new search with another --out (a resume needs the search.json that search wrote)"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _is_a(value: Any, hint: Any) -> bool:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_is_a(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # JSON writes 1.0 as 1.0, but a hand-written 1 is a fine float
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return " or ".join(_type_name(h) for h in typing.get_args(hint))
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def _check_types(config: SearchConfig, *, what: str) -> None:
    hints = typing.get_type_hints(type(config))
    for f in fields(config):
        value = getattr(config, f.name)
        if not _is_a(value, hints[f.name]):
            raise ConfigError(
                f"{what} {f.name} must be {_type_name(hints[f.name])}, got {type(value).__name__} {value!r:.40}",
                f"pass {_flag(f.name)} a {_type_name(hints[f.name])}",
            )


# -- which runs may share a study --------------------------------------------------------------------
def trial_code_hash() -> str:
    """Hash of the source that decides a run's numbers: the trial runner, the data pipeline and the search
    objective. Another version of that code may train differently, so it gets other studies."""
    import loratune

    root = Path(loratune.__file__).parent
    h = hashlib.sha256()
    for path in sorted([*root.glob("trial/*.py"), *root.glob("data/*.py"), root / "search" / "objective.py"]):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:10]


def content_digest(path: str | Path) -> str:
    """sha256 (16 hex) of a data file's bytes, or of every file under a dataset directory."""
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    h = hashlib.sha256()
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode() + b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def study_fingerprint(
    *,
    model: str,
    data_digest: str,
    n_train: int,
    n_val: int,
    n_reference: int,
    settings: TrainSettings,
    code: str | None = None,
) -> str:
    """The fingerprint every run key of a study includes: runs with equal fingerprints (and equal variant
    and LR) are the same run. ``loratune search`` and bench/search_efficiency.py both call this."""
    import loratune

    return fingerprint(
        {
            "loratune": loratune.__version__,
            "code": code or trial_code_hash(),
            "model": model,
            "data": data_digest,
            "n_train": n_train,
            "val": n_val,
            "reference": n_reference,
            **settings_identity(settings),
        }
    )
