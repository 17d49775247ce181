"""The classification side of ``loratune train`` and ``loratune eval`` (``--task-type seq-cls``, or
classification data under ``--task-type auto``): the commands parse their options, then call these."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.table import Table

from loratune.budget import AdapterSpec
from loratune.cli.common import console, err_console, print_json, warn_lines
from loratune.data.classification import ClsRaw, describe_counts
from loratune.errors import ConfigError
from loratune.trial.types import TrainSettings, TrialResult
from loratune.units import fmt_bytes, fmt_count


def train_seq_cls(
    model: str,
    raw: ClsRaw,
    settings: TrainSettings,
    make_adapter: Callable[[int], AdapterSpec],
    *,
    peft_extra: dict[str, Any],
    val_fraction: float,
    out: Path | None,
    allow_pickle: bool,
    progress: bool,
    json_out: bool,
    slug: Callable[[str], str],
    device: str = "cpu",
) -> TrialResult:
    """Load ``AutoModelForSequenceClassification`` for the data's labels, train, print before/after."""
    from loratune.models import resolve_source
    from loratune.trial.cls_runner import ClassifierRunner
    from loratune.trial.runner import quiet_libraries
    from loratune.trial.seq_cls import labels_of, prepare_cls

    labels = labels_of(raw, val_fraction=val_fraction, seed=settings.seed)  # before loading: bad labels fail fast
    source = resolve_source(model)
    quiet_libraries()
    runner = ClassifierRunner(
        source, labels=labels, compute_dtype=settings.compute_dtype, allow_pickle=allow_pickle, device=device
    )
    adapter = make_adapter(runner.anatomy.num_layers)
    data = prepare_cls(
        raw, runner.tokenizer, max_length=settings.max_length, val_fraction=val_fraction, seed=settings.seed
    )
    out_dir = out or Path("runs") / slug(f"{runner.label}-cls-{adapter.method}-r{adapter.r}")
    if not json_out:
        err_console.print(
            f"[bold]{runner.label}[/] — seq-cls, {adapter.method} r={adapter.r} alpha={adapter.alpha:g}, "
            f"{settings.compute_dtype}",
            highlight=False,
        )
        err_console.print(f"data: {data.path}", highlight=False, soft_wrap=True)
        err_console.print(
            f"{len(data.train)} train / {len(data.val)} val examples, {len(labels)} labels — "
            f"train: {describe_counts(data.train_counts)}; val: {describe_counts(data.val_counts)}",
            highlight=False,
        )
    result = runner.run(
        adapter, settings, data.train, data.val, save_dir=out_dir, progress=progress, peft_extra=peft_extra
    )
    result.extra["class_counts"] = {"train": data.train_counts, "val": data.val_counts}
    if json_out:
        print_json(result.to_dict())
    else:
        print_cls_result(result)
        warn_lines(result.warnings)
    return result


def _fmt(v: float | None, spec: str = ".4f") -> str:
    return "—" if v is None else format(v, spec)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f} %"


def print_cls_result(res: TrialResult) -> None:
    colour = {"ok": "green", "pruned": "yellow"}.get(res.status, "red")
    console.print(f"status: [{colour}]{res.status}[/]" + (f" — {res.message}" if res.message else ""), highlight=False)
    table = Table("metric", "before", "after")
    table.add_row("validation loss", _fmt(res.val_loss_before), _fmt(res.val_loss_after))
    table.add_row("validation accuracy", _pct(res.val_accuracy_before), _pct(res.val_accuracy_after))
    table.add_row("validation macro-F1", _pct(res.val_f1_before), _pct(res.val_f1_after))
    console.print(table)
    peak = fmt_bytes(res.peak_memory_bytes) if res.peak_memory_bytes else "—"
    head = res.extra.get("head_params")
    lines = [
        f"steps {res.steps}, final train loss {_fmt(res.train_loss_final)}, "
        f"trainable {fmt_count(res.trainable_params)} parameters"
        + (f" (head {fmt_count(int(head))})" if isinstance(head, int) else ""),
        f"{fmt_count(res.train_tokens)} tokens at [bold]{res.tokens_per_second:,.0f} tok/s[/], wall {res.wall_seconds:.1f} s",
        f"peak memory {peak} ({res.extra.get('peak_memory_scope', 'not measured')})",
    ]
    for line in lines:
        console.print(line, highlight=False)
    if res.adapter_dir:
        console.print(f"adapter + metrics.json → {res.adapter_dir}", highlight=False, soft_wrap=True)


def eval_seq_cls(
    model: str,
    raw: ClsRaw,
    *,
    adapter: Path | None,
    split: str,
    val_fraction: float,
    seed: int,
    batch_size: int,
    max_length: int,
    compute_dtype: str,
    allow_pickle: bool,
    json_out: bool,
) -> dict[str, Any]:
    """Loss, accuracy and macro-F1 of the classifier (with the adapter's trained head when given)."""
    from loratune.models import resolve_source
    from loratune.trial.adapter_io import read_metrics
    from loratune.trial.cls_runner import ClassifierRunner
    from loratune.trial.runner import quiet_libraries
    from loratune.trial.seq_cls import evaluate_cls, labels_of, prepare_cls, set_pad_token

    labels = labels_of(raw, val_fraction=val_fraction if split == "val" else 0.0, seed=seed)
    if adapter is not None:
        extra = (read_metrics(adapter) or {}).get("extra") or {}
        trained = extra.get("labels") if isinstance(extra, dict) else None
        if not trained:
            raise ConfigError(
                f"{adapter} is not a classification adapter (its metrics.json names no labels)",
                "pass an adapter that `loratune train --task-type seq-cls` wrote",
            )
        labels = tuple(str(x) for x in trained)
    source = resolve_source(model)
    quiet_libraries()
    runner = ClassifierRunner(source, labels=labels, compute_dtype=compute_dtype, allow_pickle=allow_pickle)
    data = prepare_cls(
        raw,
        runner.tokenizer,
        max_length=max_length,
        val_fraction=val_fraction if split == "val" else 0.0,
        seed=seed,
        labels=labels,
    )
    rows = data.val if split == "val" and data.val else data.train + data.val
    pad_id = set_pad_token(runner.model, runner.tokenizer)
    scored = runner.model
    if adapter is not None:
        from peft import PeftModel

        scored = PeftModel.from_pretrained(runner.model, str(adapter), is_trainable=False)
    try:
        s = evaluate_cls(scored, rows, pad_id=pad_id, batch_size=batch_size, compute_dtype=compute_dtype)
    finally:
        if adapter is not None:
            scored.unload()
    assert s is not None
    out = {
        "model": runner.label,
        "adapter": str(adapter) if adapter else None,
        "task_type": "seq-cls",
        "examples": s.n,
        "labels": list(labels),
        "loss": s.loss,
        "accuracy": s.accuracy,
        "f1": s.f1,
    }
    if json_out:
        print_json(out)
        return out
    console.print(f"[bold]{runner.label}[/]" + (f" + {adapter}" if adapter else ""), highlight=False)
    table = Table("metric", "value")
    table.add_row("examples", str(s.n))
    table.add_row("labels", ", ".join(labels))
    table.add_row("loss", f"{s.loss:.4f}")
    table.add_row("accuracy", _pct(s.accuracy))
    table.add_row("macro-F1", _pct(s.f1))
    console.print(table)
    return out
