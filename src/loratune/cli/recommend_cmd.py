"""``loratune recommend MODEL``: a complete LoRA config, every value with its rule and source."""

from __future__ import annotations

import difflib
import json
import textwrap
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from loratune.advise import GOALS, METHOD_CHOICES, PRESETS, RULE_SETS, AdviceInputs, Recommendation, recommend
from loratune.advise.datasize import count_data
from loratune.advise.explain import short_source, source_legend
from loratune.advise.tasks import TASK_CLASSES
from loratune.cli.common import (
    JsonOpt,
    ModelArg,
    check_output_dir,
    check_output_file,
    console,
    err_console,
    print_json,
    warn_lines,
)
from loratune.errors import ConfigError
from loratune.export import FORMATS, SUFFIXES, export_config
from loratune.measure.lr_probe import PROBE_STEPS, LRProbe, check_range
from loratune.measure.lr_probe_plot import ascii_curve, save_png
from loratune.measure.lr_probe_run import ProbeRequest, check_probe, probe_recommendation
from loratune.models import load_anatomy, resolve_source
from loratune.models.seq_cls import advice_anatomy
from loratune.paths import write_atomic
from loratune.trial.device import DEVICE_HELP
from loratune.units import fmt_bytes, fmt_count, parse_int_list, parse_size


def _choice(value: str | None, allowed: tuple[str, ...] | list[str], option: str) -> None:
    if value is not None and value not in allowed:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}", param_hint=option)


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return ", ".join(str(x) for x in v) if len(v) <= 12 else f"{v[0]}–{v[-1]} ({len(v)})"
    return str(v)


def recommend_cmd(
    model: ModelArg,
    task: Annotated[
        str | None,
        typer.Option("--task", help=f"One of {', '.join(TASK_CLASSES)}, or free text (mapped, mapping shown)."),
    ] = None,
    dataset_size: Annotated[int | None, typer.Option("--dataset-size", help="Number of training examples.")] = None,
    data: Annotated[
        str | None, typer.Option("--data", help="Dataset file to count examples and tokens (or 'demo').")
    ] = None,
    vram: Annotated[str | None, typer.Option("--vram", help="GPU memory to fit, e.g. 8GB, 24GiB.")] = None,
    goal: Annotated[str, typer.Option("--goal", help=f"One of {', '.join(GOALS)}.")] = "balanced",
    protect_knowledge: Annotated[
        bool, typer.Option("--protect-knowledge", help="Forgetting matters: guard the base model's knowledge.")
    ] = False,
    preset: Annotated[str | None, typer.Option("--preset", help=f"The seed's scenarios: {', '.join(PRESETS)}.")] = None,
    rules: Annotated[
        str, typer.Option("--rules", help="seed, literature, or combined (both shown where they differ).")
    ] = "combined",
    method: Annotated[str, typer.Option("--method", help=f"One of {', '.join(METHOD_CHOICES)}.")] = "auto",
    layers: Annotated[str | None, typer.Option("--layers", help="layers_to_transform: 6-11, 0,2,4 or 20-.")] = None,
    seq_len: Annotated[int, typer.Option("--seq-len", help="Training sequence length (tokens).")] = 512,
    export: Annotated[
        str | None,
        typer.Option("--export", help=f"Export format(s), a comma list: {', '.join(FORMATS)}."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Write the export (or the JSON) to this file; with several --export formats, a folder."
        ),
    ] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="One wide table with every rule, source and the other side.")
    ] = False,
    json_out: JsonOpt = False,
    task_type: Annotated[
        str,
        typer.Option(
            "--task-type", help="auto (an encoder with --task classification: seq-cls), causal-lm or seq-cls."
        ),
    ] = "auto",
    num_labels: Annotated[int, typer.Option("--num-labels", help="seq-cls: outputs of the classifier head.")] = 2,
    probe: Annotated[
        bool,
        typer.Option(
            "--probe", help="Measure the LR: a short LR range test of the recommended adapter on --data (≤ 60 steps)."
        ),
    ] = False,
    probe_plot: Annotated[
        Path | None, typer.Option("--probe-plot", help="--probe: also write the loss-vs-LR curve to this PNG.")
    ] = None,
    probe_steps: Annotated[int, typer.Option("--probe-steps", help="--probe: steps of the range test.")] = PROBE_STEPS,
    device: Annotated[str, typer.Option("--device", help=f"--probe: {DEVICE_HELP}")] = "auto",
    allow_pickle: Annotated[
        bool, typer.Option("--allow-pickle", help="--probe: allow pickle weight files (can run code).")
    ] = False,
) -> None:
    """Recommend r, alpha, modules, dropout, LR, batch and steps — each with its rule and source."""
    _choice(goal, GOALS, "--goal")
    _choice(rules, RULE_SETS, "--rules")
    _choice(method, METHOD_CHOICES, "--method")
    formats = _export_formats(export)
    if dataset_size is not None and data is not None:
        raise ConfigError("give --dataset-size or --data, not both", "--data counts the examples itself")
    if probe and data is None:
        raise ConfigError("--probe trains on your data: it needs --data FILE (or --data demo)", "add --data")
    if probe_plot is not None and not probe:
        raise ConfigError("--probe-plot draws the curve of --probe", "add --probe")
    plot_file = check_output_file(probe_plot, "--probe-plot") if probe_plot is not None else None
    request = ProbeRequest(model, data or "", steps=probe_steps, device=device, allow_pickle=allow_pickle)
    if probe:
        check_range(request.steps, request.min_lr, request.max_lr)
    if len(formats) > 1 and out is None:
        raise ConfigError(
            f"--export {export} names {len(formats)} formats, written one file each", "add --out DIR for the files"
        )
    # Every output path is checked before any work: --out is the file of one format (or of the JSON),
    # the folder of several.
    targets = _out_files(formats, out)
    vram_bytes = parse_size(vram, "--vram") if vram is not None else None
    anatomy = advice_anatomy(resolve_source(model), task_type, task, num_labels, load=load_anatomy)
    tokens, note = None, ""
    if data is not None:
        counted = count_data(data)
        dataset_size, tokens, note = counted.examples, counted.approx_tokens, counted.note
    inputs = AdviceInputs(
        task=task,
        dataset_size=dataset_size,
        dataset_tokens=tokens,
        tokens_note=note,
        vram_bytes=vram_bytes,
        goal=goal,
        protect_knowledge=protect_knowledge,
        preset=preset,
        rules=rules,
        method=method,
        layers=tuple(parse_int_list(layers, what="layer range", upper=anatomy.num_layers)) if layers else None,
        seq_len=seq_len,
    )
    rec = recommend(anatomy, inputs)
    measured = _probe(request, rec, quiet=json_out) if probe else None
    if measured is not None:
        rec = rec.with_measured_lr(measured.lr, f"measured: {measured.rule} — {measured.reason}", measured.source)
    data_dict = rec.to_dict()
    if measured is not None:
        data_dict["lr_probe"] = measured.to_dict()
    # Every text is made before the first is written: an exporter that refuses leaves no file behind.
    texts = [export_config(fmt, data_dict, model) for fmt in formats]
    if measured is not None and plot_file is not None:
        save_png(measured, plot_file)
    if formats and out is None:
        if measured is not None:
            _print_probe(measured, rec, err_console)  # stdout holds the export
        typer.echo(texts[0], nl=False)
        warn_lines(rec.warnings)
        _wrote([plot_file] if plot_file else [])
        return
    if not formats and out is not None:
        texts = [json.dumps(data_dict, indent=2) + "\n"]
    for path, text in zip(targets, texts, strict=True):
        write_atomic(path, text)
    if json_out:
        print_json(data_dict)
    else:
        if measured is not None:
            _print_probe(measured, rec, console)
        (_print_full if explain else _print)(rec, data_dict)
    _wrote(targets + ([plot_file] if plot_file else []))


def _wrote(paths: list[Path]) -> None:
    if paths:
        err_console.print(f"wrote {', '.join(str(p) for p in paths)}", highlight=False, soft_wrap=True)


def _probe(request: ProbeRequest, rec: Recommendation, *, quiet: bool) -> LRProbe:
    """The range test of ``rec``; its header and progress bar on stderr (none under --json)."""
    data = rec.to_dict()
    check_probe(request, data)
    header = None if quiet else (lambda what: err_console.print(what, highlight=False, soft_wrap=True))
    return probe_recommendation(request, data, on_start=header, progress=not quiet)


def _print_probe(p: LRProbe, rec: Recommendation, out: Any) -> None:
    """The curve, then the chosen LR with its reason and the rule's value next to it."""
    ran = f"{len(p.lrs)} of {p.planned_steps} steps" if p.stopped_early else f"{len(p.lrs)} steps"
    out.print(
        Text.assemble(
            ("LR range test", "bold"), f" [Smith arXiv:1506.01186]: smoothed loss vs LR, {ran}, {p.seconds:.0f} s"
        ),
        highlight=False,
    )
    for row in ascii_curve(p.lrs, p.smoothed, p.lr):
        out.print(Text(row), highlight=False, soft_wrap=True)
    alt = rec.explanation("learning_rate").alternative
    rule = f" (the rule says {_fmt(alt.value)})" if alt is not None else ""
    body = Text.assemble(("chosen LR ", "bold"), (f"{p.lr:g}", "bold"), f"{rule}: {p.rule} — {p.reason}.")
    for i, line in enumerate(body.wrap(out, max(20, out.width - 2))):
        line.rstrip()
        out.print(Text.assemble("  ", line) if i else line, highlight=False, soft_wrap=True)
    out.print()


def _export_formats(text: str | None) -> list[str]:
    """``peft,axolotl`` → the formats, in order, duplicates dropped; every name checked up front."""
    if text is None:
        return []
    names = list(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    if not names:
        raise typer.BadParameter(f"{text!r} names no format; use one of {', '.join(FORMATS)}", param_hint="--export")
    for n in names:
        if n not in FORMATS:
            close = difflib.get_close_matches(n, FORMATS, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise typer.BadParameter(f"{n!r} is not one of {', '.join(FORMATS)}{hint}", param_hint="--export")
    return names


def _out_files(formats: list[str], out: Path | None) -> list[Path]:
    """The files ``--out`` stands for, each checked writable (nothing is created yet): one format or
    none → ``out`` itself; several → ``out/<format><suffix>`` (peft.json, axolotl.yaml…)."""
    if out is None:
        return []
    if len(formats) <= 1:
        return [check_output_file(out, "--out")]
    folder = check_output_dir(out, "--out")
    return [check_output_file(folder / f"{fmt}{SUFFIXES[fmt]}", "--out") for fmt in formats]


def _header(rec: Recommendation) -> None:
    console.print(
        Text.assemble((rec.model, "bold"), f" — task {rec.task}, rules: {rec.rules}, method: {rec.method}"),
        highlight=False,
    )


def _print(rec: Recommendation, d: dict[str, Any]) -> None:
    """The compact form: parameter, value, source; then each reason as a wrapped paragraph (both
    sides where the seed and the literature disagree); then the full citations once."""
    _header(rec)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("parameter", no_wrap=True)
    table.add_column("value", overflow="fold", max_width=36)
    table.add_column("source", overflow="fold")
    for e in rec.explanations:
        table.add_row(e.param, _fmt(e.value), short_source(e.source))
    console.print(table)
    _summary(rec)
    width = console.width
    _fit(rec, width)
    console.print()
    console.print(Text("why", style="bold"))
    brief: list[Text] = []  # one-line rules with nothing on the other side: one paragraph together
    for e in rec.explanations:
        if e.alternative is None and not e.note and len(e.param) + len(e.rule) <= _BRIEF:
            brief.append(Text.assemble((e.param, "bold"), ": ", e.rule))
            continue
        body = Text.assemble((e.param, "bold"), ": ", _sentence(e.rule))
        if e.alternative is not None:
            a = e.alternative
            side = "the seed" if a.source.startswith("seed") else "the literature"
            body.append(f" {side.capitalize()} says {_fmt(a.value)}: {a.rule} [{short_source(a.source)}].")
        if e.note:
            body.append(f" {e.note}")
        _paragraph(body, width)
    if brief:
        _paragraph(Text("; ").join(brief), width)
    legend = source_legend([e.source for e in rec.explanations] + _alt_sources(rec))
    if legend:
        _paragraph(Text.assemble(("sources", "bold"), ": ", " · ".join(legend)), width)
    _peft(d, rec.method, width)
    warn_lines(rec.warnings)


def _sentence(text: str) -> str:
    return text if text.endswith((".", "]", ")")) else text + "."


_BRIEF = 60  # characters of "param: rule" that count as a one-liner


def _alt_sources(rec: Recommendation) -> list[str]:
    return [e.alternative.source for e in rec.explanations if e.alternative is not None]


def _paragraph(text: Text, width: int, indent: int = 2) -> None:
    """``text`` wrapped to ``width`` cells, continuation lines indented (cell-aware: Korean is 2 wide)."""
    lines = text.wrap(console, max(20, width - indent))
    for i, line in enumerate(lines):
        line.rstrip()
        console.print(Text.assemble(" " * indent, line) if i else line, soft_wrap=True, highlight=False)


def _summary(rec: Recommendation) -> None:
    console.print(
        Text.assemble(
            "trainable: ",
            (fmt_count(rec.trainable_params), "bold"),
            f" ({rec.trainable_percent:.2f} %); estimated peak memory: ",
            (fmt_bytes(rec.memory["total_bytes"]), "bold"),
            f" of {fmt_bytes(rec.memory['vram_bytes'])}" if rec.memory.get("vram_bytes") else "",
        ),
        highlight=False,
    )


def _fit(rec: Recommendation, width: int) -> None:
    if rec.fit_steps:
        steps = Table("#", "step", "change", "memory", "fits", title="fit to VRAM (seed order, then give back)")
        for i, s in enumerate(rec.fit_steps, 1):
            steps.add_row(str(i), s.action, s.change, fmt_bytes(s.total_bytes), "yes" if s.fits else "no")
        console.print(steps)
    if rec.memory.get("fits") is False:
        _paragraph(
            Text.assemble(
                ("does not fit", "red"),
                f": the smallest config needs {fmt_bytes(rec.memory['minimum_vram_bytes'])} "
                "— that is the minimum VRAM (or shorten --seq-len)",
            ),
            width,
        )


def _peft(d: dict[str, Any], method: str, width: int) -> None:
    cls = "AdaLoraConfig" if method == "adalora" else "LoraConfig"
    call = f"{cls}(" + ", ".join(f"{k}={v!r}" for k, v in d["config"].items()) + ")"
    # Wrapped at spaces only, inside the parentheses: still valid Python to paste.
    lines = textwrap.wrap(
        call, width=max(40, width - 2), subsequent_indent="    ", break_long_words=False, break_on_hyphens=False
    )
    console.print("PEFT:", highlight=False)
    for line in lines:
        console.print(Text("  " + line), soft_wrap=True, highlight=False)


def _print_full(rec: Recommendation, d: dict[str, Any]) -> None:
    """``--explain``: one row per value with its rule, source and the other side."""
    _header(rec)
    table = Table("param", "value", "rule", "source", "other side · why", show_lines=True)
    for e in rec.explanations:
        other = ""
        if e.alternative is not None:
            other = f"{_fmt(e.alternative.value)} — {e.alternative.rule} [{e.alternative.source}]"
        other = f"{other}\n{e.note}".strip()
        table.add_row(*(Text(c) for c in (e.param, _fmt(e.value), e.rule, e.source, other)))
    for col in table.columns:
        col.overflow = "fold"
    console.print(table)
    _summary(rec)
    _fit(rec, console.width)
    _peft(d, rec.method, console.width)
    warn_lines(rec.warnings)
