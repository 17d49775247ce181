"""``loratune budget MODEL --r 8 --targets …``: exact trainable parameters per module, layer, total,
and the training-memory estimate of one step (``--memory`` for each term, ``--vram 8GB`` to fit)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from loratune.anatomy.targets import Resolution, TargetSpec, parse_targets, resolve
from loratune.anatomy.types import Anatomy
from loratune.budget import METHODS, AdapterSpec, count_params
from loratune.budget.adapter_file import AdapterFile, read_adapter_file
from loratune.budget.fit import FitReport, fit_report
from loratune.budget.memory import (
    ATTN_IMPLS,
    DEVICES,
    DTYPES,
    OPTIMIZERS,
    QUANTS,
    MemoryEstimate,
    MemorySettings,
    estimate_memory,
)
from loratune.budget.params import check_rank_fits
from loratune.budget.spec import DEFAULT_R, default_alpha
from loratune.cli.common import JsonOpt, ModelArg, console, print_json, warn_lines, warning_fields
from loratune.errors import ConfigError
from loratune.measure.preflight import Preflight
from loratune.models import load_anatomy, resolve_source
from loratune.models.seq_cls import load_task_anatomy
from loratune.units import fmt_bytes, fmt_count, parse_int_list, parse_size


def _pattern(text: str | None, what: str) -> dict[str, float]:
    """``q_proj=16,v_proj=4`` or a JSON object → dict of numbers (AdapterSpec checks their range)."""
    if not text:
        return {}
    try:
        if text.lstrip().startswith("{"):
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError
        else:
            data = {k.strip(): v for k, v in (p.split("=", 1) for p in text.split(",") if p.strip())}
        return {str(k): float(v) for k, v in data.items()}
    except (ValueError, TypeError, RecursionError):
        raise ConfigError(f"cannot read {what} {text!r}", "write it like q_proj=16,v_proj=4 or as JSON") from None


def _ranks(values: dict[str, float], what: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for k, v in values.items():
        if not (math.isfinite(v) and v.is_integer()):
            raise ConfigError(f"{what} {k!r} must be a whole number, got {v:g}", "write it like q_proj=16,v_proj=4")
        out[k] = int(v)
    return out


def _names(text: str) -> tuple[str, ...]:
    return tuple(e.strip() for e in text.split(",") if e.strip())


def _spec(
    anatomy: Anatomy,
    file: AdapterFile | None,
    flags: dict[str, Any],
    targets: TargetSpec,
) -> tuple[AdapterSpec, Resolution]:
    """The file's adapter (if any) with the flags given on top; a rank above every targeted module's
    min(in, out) is refused naming the largest sensible r, before anything else is counted."""
    kw = dict(file.values) if file else {}
    kw.pop("targets", None)
    kw.update({k: v for k, v in flags.items() if v is not None and k != "alpha"})
    kw.setdefault("r", DEFAULT_R)
    if kw.get("method", "lora") != "adalora" and flags["target_r"] is None:
        kw.pop("target_r", None)  # an AdaLoRA file counted as --method lora/dora: its target_r has no meaning
    if flags["alpha"] is not None:
        kw["alpha"] = flags["alpha"]
    elif flags["r"] is not None or "alpha" not in kw:
        kw["alpha"] = float(default_alpha(kw["r"]))
    res = resolve(anatomy, targets)
    check_rank_fits(kw["r"], res.modules)
    return AdapterSpec(targets=targets, **kw), res


def budget(
    model: ModelArg,
    r: Annotated[int | None, typer.Option("--r", help="LoRA rank (AdaLoRA: init_r) [8].", show_default=False)] = None,
    alpha: Annotated[
        float | None, typer.Option("--alpha", help="lora_alpha (scaling = alpha / r); default 2·r (seed 000 §2.2).")
    ] = None,
    targets: Annotated[
        str | None,
        typer.Option(
            "--targets",
            help="Comma list of names (PEFT suffix matching), 're:<regex>', 'all-linear', or a role shorthand: "
            "attention, mlp, all, qv [attention].",
            show_default=False,
        ),
    ] = None,
    method: Annotated[
        str | None, typer.Option("--method", help=f"One of {', '.join(METHODS)} [lora].", show_default=False)
    ] = None,
    layers: Annotated[str | None, typer.Option("--layers", help="layers_to_transform: 6-11, 0,2,4 or 20-.")] = None,
    layers_pattern: Annotated[
        str | None, typer.Option("--layers-pattern", help="Name of the layer list, e.g. layers or h.")
    ] = None,
    rank_pattern: Annotated[
        str | None, typer.Option("--rank-pattern", help="Per-module ranks: q_proj=16,v_proj=4.")
    ] = None,
    alpha_pattern: Annotated[str | None, typer.Option("--alpha-pattern", help="Per-module alphas: q_proj=32.")] = None,
    target_r: Annotated[int | None, typer.Option("--target-r", help="AdaLoRA: average final rank.")] = None,
    exclude: Annotated[str | None, typer.Option("--exclude", help="exclude_modules, comma list.")] = None,
    modules_to_save: Annotated[
        str | None, typer.Option("--modules-to-save", help="Fully trained modules, e.g. lm_head.")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Adapter config to count: `loratune recommend --json` output or a PEFT adapter_config.json; "
            "flags override it.",
        ),
    ] = None,
    embeddings: Annotated[bool, typer.Option("--embeddings", help="Allow embedding layers as targets.")] = False,
    per_module: Annotated[bool, typer.Option("--per-module", help="List every adapted module.")] = False,
    dropout: Annotated[
        float | None,
        typer.Option("--dropout", help="lora_dropout (p > 0 keeps a copy of x) [0.05].", show_default=False),
    ] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Micro-batch size [1].")] = None,
    seq_len: Annotated[int | None, typer.Option("--seq-len", help="Tokens per sequence [512].")] = None,
    dtype: Annotated[str | None, typer.Option("--dtype", help=f"Base dtype: {', '.join(DTYPES)} [bf16].")] = None,
    quant: Annotated[str | None, typer.Option("--quant", help=f"Base quantization: {', '.join(QUANTS)}.")] = None,
    grad_checkpointing: Annotated[
        bool, typer.Option("--grad-checkpointing", help="Recompute activations in backward.")
    ] = False,
    optimizer: Annotated[str | None, typer.Option("--optimizer", help=f"{', '.join(OPTIMIZERS)} [adamw].")] = None,
    device: Annotated[str | None, typer.Option("--device", help=f"{', '.join(DEVICES)} [cuda].")] = None,
    attn: Annotated[str | None, typer.Option("--attn", help=f"Attention: {', '.join(ATTN_IMPLS)} [sdpa].")] = None,
    autocast: Annotated[
        bool, typer.Option("--autocast", help="Forward under torch.autocast in --dtype (Trainer bf16=True).")
    ] = False,
    vram: Annotated[str | None, typer.Option("--vram", help="Does it fit? e.g. 8GB, 24GiB.")] = None,
    measure: Annotated[
        bool,
        typer.Option(
            "--measure",
            help="Pre-flight: build the shape with random weights on --device (default: CUDA when available) "
            "and measure 2 real training steps beside the estimate.",
        ),
    ] = False,
    memory: Annotated[bool, typer.Option("--memory", help="Show every memory term.")] = False,
    task_type: Annotated[
        str, typer.Option("--task-type", help="causal-lm, or seq-cls: the model as a classifier (its head counted).")
    ] = "causal-lm",
    num_labels: Annotated[int, typer.Option("--num-labels", help="seq-cls: outputs of the classifier head.")] = 2,
    json_out: JsonOpt = False,
) -> None:
    """Count exactly what a LoRA config trains — equal to PEFT's count, without loading weights."""
    file = read_adapter_file(config) if config is not None else None  # before the model: a bad file is cheap
    vram_bytes = parse_size(vram, "--vram") if vram is not None else None
    anatomy = load_task_anatomy(resolve_source(model), task_type, num_labels, load=load_anatomy)
    ft: TargetSpec | None = file.values.get("targets") if file else None
    layer_list = tuple(parse_int_list(layers, what="layer range", upper=anatomy.num_layers)) if layers else None
    target_spec = TargetSpec(
        target_modules=parse_targets(targets) if targets is not None else (ft.target_modules if ft else "attention"),
        layers_to_transform=layer_list if layers else (ft.layers_to_transform if ft else None),
        layers_pattern=_names(layers_pattern) if layers_pattern else (ft.layers_pattern if ft else None),
        exclude_modules=_names(exclude) if exclude is not None else (ft.exclude_modules if ft else ()),
        modules_to_save=_names(modules_to_save) if modules_to_save is not None else (ft.modules_to_save if ft else ()),
        include_embeddings=embeddings,
    )
    flags: dict[str, Any] = {
        "r": r,
        "alpha": alpha,
        "method": method,
        "dropout": dropout,
        "target_r": target_r,
        "rank_pattern": _ranks(_pattern(rank_pattern, "--rank-pattern"), "--rank-pattern") or None,
        "alpha_pattern": _pattern(alpha_pattern, "--alpha-pattern") or None,
    }
    spec, resolution = _spec(anatomy, file, flags, target_spec)
    pb = count_params(anatomy, spec, resolution)
    measure_device = None
    if measure:
        from loratune.trial.device import resolve_device

        # `--device cuda:1` names the GPU to measure on; the estimate takes its kind.
        measure_device = resolve_device(device or "auto")
        device = "cuda" if measure_device.startswith("cuda") else "cpu"
    explicit = (batch_size, seq_len, dtype, quant, optimizer, device, attn)
    show_terms = memory or vram is not None or grad_checkpointing or autocast or any(v is not None for v in explicit)
    defaults = MemorySettings()
    settings = MemorySettings(
        batch_size=defaults.batch_size if batch_size is None else batch_size,
        seq_len=defaults.seq_len if seq_len is None else seq_len,
        dtype=dtype or defaults.dtype,
        quant=quant or defaults.quant,
        grad_checkpointing=grad_checkpointing,
        optimizer=optimizer or defaults.optimizer,
        device=device or defaults.device,
        attn_impl=attn or defaults.attn_impl,
        autocast=autocast,
    )
    est = estimate_memory(anatomy, spec, settings, pb)
    fit = fit_report(anatomy, spec, settings, vram_bytes) if vram_bytes is not None else None
    measured = None
    if measure_device is not None:
        from loratune.measure.preflight import run_preflight
        from loratune.models import read_config

        measured = run_preflight(
            read_config(resolve_source(model)), anatomy, spec, settings, est, device=measure_device
        )
    if json_out:
        print_json(
            {
                "model": anatomy.source,
                "trainable_params": pb.trainable_params,
                "total_params": pb.base_params,
                "all_params": pb.all_params,
                "trainable_percent": round(pb.trainable_percent, 4),
                "modules_to_save_params": pb.modules_to_save_params,
                "per_layer": {("none" if k is None else str(k)): v for k, v in pb.per_layer().items()},
                "modules": [asdict(m) for m in pb.modules],
                "peft_config": pb.peft_config,
                **warning_fields(pb.warnings),
                "memory": {**est.to_dict(), "settings": asdict(settings)},
                **({"fit": fit.to_dict()} if fit is not None else {}),
                **({"measured": measured.to_dict()} if measured is not None else {}),
            }
        )
        return
    console.print(
        f"[bold]{anatomy.source}[/] — {spec.method}, r={spec.r}, alpha={spec.alpha:g}, {len(pb.modules)} modules adapted"
    )
    if per_module:
        table = Table("module", "role", "in → out", "r", "params")
        table.columns[0].overflow = "fold"  # names are what users copy: folded, never cut with "…"
        for m in pb.modules:
            table.add_row(m.name, m.role, f"{m.in_features} → {m.out_features}", str(m.r), fmt_count(m.params))
        console.print(table)
    else:
        table = Table("suffix", "role", "modules", "in → out", "params each", "params")
        groups: dict[tuple[str, str, int, int, int], list[int]] = {}
        for m in pb.modules:
            groups.setdefault((m.name.rsplit(".", 1)[-1], m.role, m.in_features, m.out_features, m.params), []).append(
                m.params
            )
        for (suffix, role, fin, fout, each), ps in groups.items():
            table.add_row(suffix, role, str(len(ps)), f"{fin} → {fout}", fmt_count(each), fmt_count(sum(ps)))
        console.print(table)
    if pb.modules_to_save_params:
        console.print(f"modules_to_save: {fmt_count(pb.modules_to_save_params)} parameters")
    console.print(
        f"trainable: [bold]{fmt_count(pb.trainable_params)}[/] of {fmt_count(pb.all_params)} "
        f"([bold]{pb.trainable_percent:.2f} %[/]); base model {fmt_count(pb.base_params)}"
    )
    if show_terms:
        _print_terms(est, settings)
    else:
        console.print(f"memory: ≈ [bold]{fmt_bytes(est.total_bytes)}[/] peak per step ({_describe(settings)})")
        console.print("(--memory for each term, --vram 8GB to fit)")
    if fit is not None:
        _print_fit(fit, settings)
    if measured is not None:
        _print_measured(measured)
    warn_lines(pb.warnings)


def _print_measured(m: Preflight) -> None:
    overhead = m.estimate_bytes - m.estimate_allocated_bytes
    console.print(
        f"measured on {m.device}: peak [bold]{fmt_bytes(m.measured_bytes)}[/] over {m.steps} real training steps "
        f"(random weights, {m.seconds:.1f} s) vs estimate {fmt_bytes(m.estimate_allocated_bytes)}: "
        f"{100 * m.rel_error:+.1f} %",
        highlight=False,
    )
    if overhead:
        console.print(
            f"(the estimate's {fmt_bytes(overhead)} CUDA context + allocator slack is outside the allocator's count; "
            f"reserved at the peak: {fmt_bytes(m.measured_reserved_bytes or 0)})",
            highlight=False,
        )


def _describe(s: MemorySettings) -> str:
    quant = f", {s.quant} base" if s.quant != "none" else ""
    gc = ", checkpointing" if s.grad_checkpointing else ""
    ac = ", autocast" if s.autocast else ""
    return f"{s.dtype}{quant}{ac}, {s.device}, batch {s.batch_size} × {s.seq_len} tokens, {s.optimizer}{gc}"


def _print_terms(est: MemoryEstimate, settings: MemorySettings) -> None:
    table = Table("memory term", "bytes", "", "what", title=f"one training step: {_describe(settings)}")
    for label, n, why in est.terms():
        if n or label.startswith("gradients"):
            table.add_row(label, fmt_count(n), fmt_bytes(n), why)
    table.add_row("[bold]total (peak)[/]", f"[bold]{fmt_count(est.total_bytes)}[/]", fmt_bytes(est.total_bytes), "")
    console.print(table)
    pl = est.per_layer
    console.print(
        f"per layer: attention {fmt_bytes(pl['attention'])}, MLP {fmt_bytes(pl['mlp'])}, "
        f"norms {fmt_bytes(pl['norm'])}, LoRA {fmt_bytes(pl['lora'])}"
        + (f", DoRA {fmt_bytes(pl['dora'])}" if pl["dora"] else "")
        + f" = {fmt_bytes(pl['total'])}; peak during the {est.peak_phase}"
    )


def _print_fit(fit: FitReport, settings: MemorySettings) -> None:
    if fit.fits:
        console.print(
            f"fits in {fmt_bytes(fit.vram_bytes)}: [bold green]yes[/], {fmt_bytes(fit.headroom_bytes)} to spare"
        )
    else:
        console.print(
            f"fits in {fmt_bytes(fit.vram_bytes)}: [bold red]no[/], short by {fmt_bytes(-fit.headroom_bytes)}"
        )
    console.print(
        f"largest batch at {settings.seq_len} tokens: {fit.max_batch_size}; "
        f"largest sequence at batch {settings.batch_size}: {fit.max_seq_len} tokens"
    )
    if fit.give_up:
        table = Table("give up first", "total", "saves", "fits", "source")
        for g in fit.give_up:
            table.add_row(
                g.action, fmt_bytes(g.total_bytes), fmt_bytes(g.saves_bytes), "yes" if g.fits else "no", g.source
            )
        console.print(table)
