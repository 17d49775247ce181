"""``loratune train MODEL --data FILE``: one real training trial, measured, adapter saved in PEFT format."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from loratune.anatomy.targets import TargetSpec, parse_targets
from loratune.budget import METHODS, AdapterSpec
from loratune.budget.spec import default_alpha
from loratune.cli.common import JsonOpt, ModelArg, console, err_console, print_json, warn_lines
from loratune.cli.interrupt import keep_note
from loratune.errors import ConfigError
from loratune.outputs import ADAPTER_MARKERS, check_output_dir
from loratune.trial.config_file import adapter_fields, check_adapter_values, read_config_file, training_fields
from loratune.trial.device import DEVICE_HELP, QUANT_HELP
from loratune.trial.types import TrainSettings
from loratune.units import fmt_bytes, fmt_count, parse_int_list

DEFAULT_TARGETS = "attention"


def train(
    model: ModelArg,
    data: Annotated[
        str,
        typer.Option(
            "--data",
            help="Training data: jsonl/json/csv/parquet, .txt (one example per paragraph), a saved HF dataset "
            "directory, or 'demo'.",
        ),
    ],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="JSON from `loratune recommend --json` (keys: config, training); flags override it."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Adapter directory (default: runs/<model>-<method>-r<r>).")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="auto, prompt-response, alpaca, chat, text or classification.")
    ] = "auto",
    task_type: Annotated[
        str, typer.Option("--task-type", help="auto (from the data), causal-lm or seq-cls (a classifier).")
    ] = "auto",
    prompt_column: Annotated[str, typer.Option("--prompt-column", help="Prompt column name.")] = "prompt",
    response_column: Annotated[str, typer.Option("--response-column", help="Response column name.")] = "response",
    val_data: Annotated[
        str | None, typer.Option("--val-data", help="Separate validation file (default: split off --val-fraction).")
    ] = None,
    val_fraction: Annotated[
        float, typer.Option("--val-fraction", help="Share of --data held out for validation.")
    ] = 0.1,
    reference: Annotated[
        str,
        typer.Option("--reference", help="Plain text for forgetting (reference perplexity): a file, 'demo' or 'none'."),
    ] = "demo",
    r: Annotated[int | None, typer.Option("--r", help="LoRA rank (AdaLoRA: init_r). Default 8.")] = None,
    alpha: Annotated[float | None, typer.Option("--alpha", help="lora_alpha. Default 2·r.")] = None,
    targets: Annotated[
        str | None, typer.Option("--targets", help="Names, 're:<regex>', 'all-linear' or attention/mlp/all/qv.")
    ] = None,
    method: Annotated[str | None, typer.Option("--method", help=f"One of {', '.join(METHODS)}.")] = None,
    layers: Annotated[str | None, typer.Option("--layers", help="layers_to_transform: 6-11, 0,2,4 or 20-.")] = None,
    dropout: Annotated[float | None, typer.Option("--dropout", help="lora_dropout. Default 0.05.")] = None,
    rslora: Annotated[bool, typer.Option("--rslora", help="Scale by alpha/sqrt(r) (rsLoRA).")] = False,
    target_r: Annotated[int | None, typer.Option("--target-r", help="AdaLoRA: average final rank.")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate. Default 2e-4.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Examples per micro-batch. Default 8.")] = None,
    grad_accum: Annotated[
        int | None, typer.Option("--grad-accum", help="Micro-batches per optimizer step. Default 1.")
    ] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Optimizer steps (wins over --epochs).")] = None,
    epochs: Annotated[float | None, typer.Option("--epochs", help="Passes over the training data. Default 1.")] = None,
    warmup_ratio: Annotated[
        float | None, typer.Option("--warmup-ratio", help="Share of steps with linear warmup.")
    ] = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="cosine, linear or constant.")] = None,
    weight_decay: Annotated[float | None, typer.Option("--weight-decay", help="AdamW weight decay.")] = None,
    max_length: Annotated[
        int | None, typer.Option("--max-length", help="Tokens per example (longer ones are cut).")
    ] = None,
    grad_checkpointing: Annotated[
        bool, typer.Option("--grad-checkpointing", help="Recompute activations (less memory, ~30 % slower).")
    ] = False,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for LoRA init, shuffling and the split.")] = None,
    dtype: Annotated[
        str,
        typer.Option("--dtype", help="Frozen-base compute dtype: auto (bf16 where native), bf16, fp16 (CUDA) or fp32."),
    ] = "auto",
    device: Annotated[str, typer.Option("--device", help=DEVICE_HELP)] = "auto",
    quant: Annotated[str, typer.Option("--quant", help=QUANT_HELP)] = "none",
    eval_every: Annotated[int | None, typer.Option("--eval-every", help="Validation loss every N steps.")] = None,
    eval_batches: Annotated[
        int | None, typer.Option("--eval-batches", help="Validate on the first N batches only.")
    ] = None,
    allow_pickle: Annotated[
        bool, typer.Option("--allow-pickle", help="Allow pickle weight files (can run code).")
    ] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Train one adapter and measure it: validation and reference perplexity before/after, memory, tokens/s."""
    from loratune.data import check_val_fraction

    # ---- everything that can be checked without torch, so a typo fails in a fraction of a second
    from loratune.data.classification import read_cls, resolve_task_type
    from loratune.models import resolve_source
    from loratune.models.quantized import check_quant
    from loratune.trial.data_prep import REFERENCE_MAX_TOKENS, prepare, read, reference_examples, tokenize_reference
    from loratune.trial.device import check_device_syntax, describe, resolve_device
    from loratune.trial.precision import check_compute_dtype, resolve_compute_dtype

    # ---- everything that can be checked without torch, so a typo fails in a fraction of a second
    check_device_syntax(device)
    check_quant(quant)
    check_adapter_values(
        {"r": r, "lora_alpha": alpha, "lora_dropout": dropout, "target_r": target_r},
        flags={"r": "--r", "lora_alpha": "--alpha", "lora_dropout": "--dropout", "target_r": "--target-r"},
    )
    if out is not None:
        check_output_dir(out, "--out", replaceable=ADAPTER_MARKERS)
    cls_raw = read_cls(data, val_data=val_data) if resolve_task_type(task_type, data, fmt) == "seq-cls" else None
    raw = (
        None
        if cls_raw
        else read(data, format=fmt, prompt_column=prompt_column, response_column=response_column, val_data=val_data)
    )
    if val_data is None:
        check_val_fraction(val_fraction, allow_zero=False)
    ref_examples = reference_examples(reference)
    file_cfg = read_config_file(config) if config else {}
    spec_kw, peft_extra = adapter_fields(file_cfg.get("config") or {})
    train_kw = training_fields(file_cfg.get("training") or {})
    flags = {
        "learning_rate": lr,
        "batch_size": batch_size,
        "grad_accum": grad_accum,
        "max_steps": max_steps,
        "epochs": epochs,
        "warmup_ratio": warmup_ratio,
        "scheduler": scheduler,
        "weight_decay": weight_decay,
        "max_length": max_length,
        "seed": seed,
        "eval_every": eval_every,
        "eval_batches": eval_batches,
    }
    train_kw.update({k: v for k, v in flags.items() if v is not None})
    if epochs is not None and max_steps is None:
        train_kw.pop("max_steps", None)  # an explicit --epochs beats the file's step count
    if grad_checkpointing:
        train_kw["grad_checkpointing"] = True
    requested_dtype = check_compute_dtype(dtype if dtype != "auto" else train_kw.get("compute_dtype", "auto"))
    # Checked now with a stand-in for `auto`; the dtype itself needs the device (resolved below, with torch).
    train_kw["compute_dtype"] = requested_dtype if requested_dtype != "auto" else "fp32"
    settings = TrainSettings(**train_kw)
    # The adapter's own checks (method, rank, alpha, dropout, closed layer ranges); `--layers 20-` and the
    # target names need the model's layers and modules, checked once it is loaded.
    first = _adapter(spec_kw, None, r, alpha, targets, method, None, dropout, rslora, target_r)
    if cls_raw is not None:  # a classifier: cli/cls_cmd.py
        from loratune.cli.cls_cmd import train_seq_cls

        run_device = resolve_device(device)
        res = train_seq_cls(
            model,
            cls_raw,
            dataclasses.replace(settings, compute_dtype=resolve_compute_dtype(requested_dtype, run_device)),
            lambda n: _adapter(spec_kw, n, r, alpha, targets, method, layers, dropout, rslora, target_r),
            peft_extra=peft_extra,
            val_fraction=val_fraction,
            out=out,
            allow_pickle=allow_pickle,
            progress=not (no_progress or json_out),
            json_out=json_out,
            slug=_slug,
            device=run_device,
        )
        if res.status in ("diverged", "failed"):
            raise typer.Exit(1)
        return
    assert raw is not None
    source = resolve_source(model)
    out_dir = out or Path("runs") / _slug(f"{source.label}-{first.method}-r{first.r}")
    if out is None:
        check_output_dir(out_dir, "--out", replaceable=ADAPTER_MARKERS)
    # Ctrl-C from here on: the adapter is written into a temp directory and renamed when complete, so an
    # interrupted run leaves nothing (cli/app.py prints the note, exit 130).
    keep_note("nothing was saved")

    # ---- torch from here on
    from loratune.trial.runner import TrialRunner, quiet_libraries

    # `--device cuda` where there is none: one line (exit 2) here, before any weights load.
    run_device = resolve_device(device)
    compute_dtype = resolve_compute_dtype(requested_dtype, run_device)
    settings = dataclasses.replace(settings, compute_dtype=compute_dtype)

    quiet_libraries()
    if quant != "none":
        from loratune.models.quantized import check_bitsandbytes

        check_bitsandbytes()
    runner = TrialRunner(source, compute_dtype=compute_dtype, allow_pickle=allow_pickle, device=run_device, quant=quant)
    adapter = _adapter(spec_kw, runner.anatomy.num_layers, r, alpha, targets, method, layers, dropout, rslora, target_r)
    prepared = prepare(
        raw, runner.tokenizer, max_length=settings.max_length, val_fraction=val_fraction, seed=settings.seed
    )
    ref = tokenize_reference(ref_examples, runner.tokenizer, max_length=min(settings.max_length, REFERENCE_MAX_TOKENS))
    if not json_out:
        err_console.print(
            f"[bold]{runner.label}[/] — {adapter.method} r={adapter.r} alpha={adapter.alpha:g}, "
            + describe(runner.device, compute_dtype, quant),
            highlight=False,
        )
        err_console.print(f"data: {prepared.path}", highlight=False, soft_wrap=True)
        err_console.print(
            f"{len(prepared.train)} train / {len(prepared.val)} val examples, {len(ref)} reference passages",
            highlight=False,
        )
    result = runner.run(
        adapter,
        settings,
        prepared.train,
        prepared.val,
        ref or None,
        save_dir=out_dir,
        progress=not (no_progress or json_out),
        peft_extra=peft_extra,
    )
    if result.adapter_dir:
        keep_note(f"the adapter was saved to {result.adapter_dir}")
    if json_out:
        print_json(result.to_dict())
    else:
        _print_result(result)
        warn_lines(result.warnings)
    if result.status in ("diverged", "failed"):
        # Exit 1: the run finished but its adapter is no good; nothing was saved (loop.run_trial).
        fix = f"lower --lr (was {settings.learning_rate:g})" if result.status == "diverged" else "see the message"
        err_console.print(
            f"[red]error:[/] the trial {result.status} ({result.message}); no adapter was saved — {fix}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)


def _adapter(
    spec_kw: dict[str, Any],
    num_layers: int | None,
    r: int | None,
    alpha: float | None,
    targets: str | None,
    method: str | None,
    layers: str | None,
    dropout: float | None,
    rslora: bool,
    target_r: int | None,
) -> AdapterSpec:
    """The config file's adapter with explicit flags on top."""
    kw = dict(spec_kw)
    if r is not None:
        kw["r"] = r
    kw.setdefault("r", 8)
    if alpha is not None:
        kw["alpha"] = alpha
    elif r is not None or "alpha" not in kw:
        kw["alpha"] = default_alpha(kw["r"])
    for key, value in (("method", method), ("dropout", dropout), ("target_r", target_r)):
        if value is not None:
            kw[key] = value
    if rslora:
        kw["use_rslora"] = True
    spec_targets: TargetSpec = kw.pop("targets", None) or TargetSpec(target_modules=parse_targets(DEFAULT_TARGETS))
    if targets is not None:
        spec_targets = dataclasses.replace(spec_targets, target_modules=parse_targets(targets))
    if layers is not None:
        spec_targets = dataclasses.replace(
            spec_targets, layers_to_transform=tuple(parse_int_list(layers, what="layer range", upper=num_layers))
        )
    try:
        return AdapterSpec(targets=spec_targets, **kw)
    except TypeError as e:
        raise ConfigError(f"bad adapter config: {e}", "check the 'config' keys") from None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "—" if v is None else format(v, spec)


def _print_result(res: Any) -> None:
    colour = {"ok": "green", "pruned": "yellow"}.get(res.status, "red")
    console.print(f"status: [{colour}]{res.status}[/]" + (f" — {res.message}" if res.message else ""), highlight=False)
    table = Table("metric", "before", "after")
    table.add_row("validation loss", _fmt(res.val_loss_before, ".4f"), _fmt(res.val_loss_after, ".4f"))
    table.add_row("validation perplexity", _fmt(res.val_ppl_before), _fmt(res.val_ppl_after))
    table.add_row("reference perplexity (forgetting)", _fmt(res.ref_ppl_before), _fmt(res.ref_ppl_after))
    console.print(table)
    # Short lines, one subject each: they read at 80 columns without a wrap splitting a figure from its unit.
    peak = fmt_bytes(res.peak_memory_bytes) if res.peak_memory_bytes else "—"
    lines = [
        f"steps {res.steps}, final train loss {_fmt(res.train_loss_final, '.4f')}, "
        f"trainable {fmt_count(res.trainable_params)} parameters",
        f"{fmt_count(res.train_tokens)} tokens at [bold]{res.tokens_per_second:,.0f} tok/s[/], wall {res.wall_seconds:.1f} s",
        f"peak memory {peak} ({res.extra.get('peak_memory_scope', 'not measured')})",
    ]
    for line in lines:
        console.print(line, highlight=False)
    if res.adapter_dir:
        console.print(f"adapter + metrics.json → {res.adapter_dir}", highlight=False, soft_wrap=True)
