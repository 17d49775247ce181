"""``loratune search MODEL --data demo --strategy staged --out runs/x``: run real trials, pick the knee.

Every run is an Optuna trial in ``<out>/study.db`` (or ``--storage``); ``--resume`` continues a killed
search without rerunning a finished run. Writes ``best_config.json``, ``exports/`` and, with
``--train-final``, ``adapter/``. ``loratune report <out>`` turns the study into HTML.

This module only parses options into a :class:`~loratune.search.SearchConfig`, calls
:func:`~loratune.search.run_search` and prints its events and its result.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from loratune.cli.common import ModelArg, console, err_console
from loratune.errors import ConfigError
from loratune.trial.device import DEVICE_HELP, QUANT_HELP

if TYPE_CHECKING:
    from loratune.search.events import SearchEvent
    from loratune.search.run import SearchResult


def search(
    model: ModelArg,
    data: Annotated[str, typer.Option("--data", help="Training data file, or `demo` (the built-in QA set).")] = "demo",
    val_data: Annotated[
        str | None, typer.Option("--val-data", help="Separate validation file (default: 10 % split off --data).")
    ] = None,
    strategy: Annotated[str, typer.Option("--strategy", help="staged (the seed's method) or optuna.")] = "staged",
    out: Annotated[Path, typer.Option("--out", help="Study directory (study.db, best_config.json, report).")] = Path(
        "runs/search"
    ),
    storage: Annotated[
        str | None, typer.Option("--storage", help="Optuna storage URL (default sqlite:///<out>/study.db).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the study in --out with its saved options.")
    ] = False,
    steps: Annotated[int, typer.Option("--steps", help="Optimizer steps per run (the same for every run).")] = 10,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Micro-batch size per step.")] = 4,
    max_length: Annotated[int, typer.Option("--max-length", help="Tokens per example (longer are cut).")] = 128,
    val_examples: Annotated[int, typer.Option("--val-examples", help="Validation examples used (fixed subset).")] = 32,
    lr: Annotated[float | None, typer.Option("--lr", help="Base LR (default: the recommendation's).")] = None,
    lr_runs: Annotated[
        int,
        typer.Option(
            "--lr-runs",
            help="Cap on LR runs per variant; a sweep stops once its best LR is bracketed (1 = no LR sweep).",
        ),  # fmt: skip
    ] = 5,
    finalists: Annotated[
        int,
        typer.Option(
            "--finalists",
            help="Variants re-run at 3x, 9x … the steps, up to --max-final-steps (the fidelity ladder): the best ones "
            "and, from 2 on, one capacity challenger (the best at --max-r on every linear layer); 0 = none.",
        ),  # fmt: skip
    ] = 3,
    max_final_steps: Annotated[
        int | None, typer.Option("--max-final-steps", help="Steps of the ladder's top rung (default 1 epoch).")
    ] = None,
    trials: Annotated[int, typer.Option("--trials", help="optuna: distinct runs to make.")] = 20,
    pruner: Annotated[str, typer.Option("--pruner", help="optuna: halving, hyperband or none.")] = "halving",
    max_r: Annotated[int, typer.Option("--max-r", help="Highest rank the search may try.")] = 32,
    modules: Annotated[
        str, typer.Option("--modules", help="Module sets to compare, comma-separated; `+` joins names in one set.")
    ] = "attention,all-linear",
    try_dora: Annotated[bool, typer.Option("--try-dora", help="Also try DoRA.")] = False,
    try_layers: Annotated[
        bool, typer.Option("--try-layers", help="staged: also try only the top half of layers.")
    ] = False,
    cost: Annotated[str, typer.Option("--cost", help="What the knee minimises: params, memory or time.")] = "params",
    tolerance: Annotated[float, typer.Option("--tolerance", help="Knee: within this fraction of the best ppl.")] = 0.01,
    task_type: Annotated[
        str, typer.Option("--task-type", help="auto (from the data), causal-lm or seq-cls (a classifier).")
    ] = "auto",
    metric: Annotated[
        str, typer.Option("--metric", help="What the knee ranks by: loss, or accuracy / f1 for a classifier.")
    ] = "loss",
    max_forgetting: Annotated[
        float | None,
        typer.Option("--max-forgetting", help="Rule out variants whose reference ppl rises more (0.05 = 5 %)."),
    ] = None,
    reference: Annotated[
        str | None, typer.Option("--reference", help="Reference text for forgetting: demo, a file, or none.")
    ] = None,
    export: Annotated[
        str, typer.Option("--export", help="Export formats for the pick, comma list, or none.")
    ] = "peft,axolotl",
    train_final: Annotated[bool, typer.Option("--train-final", help="Train the pick and save the adapter.")] = False,
    final_steps: Annotated[
        int | None, typer.Option("--final-steps", help="Steps of the final run (default 1 epoch).")
    ] = None,
    task: Annotated[str | None, typer.Option("--task", help="Task for the recommendation (e.g. simple-qa).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for data split, LoRA init and the sampler.")] = 0,
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads for torch.")] = None,
    device: Annotated[str, typer.Option("--device", help=DEVICE_HELP)] = "auto",
    quant: Annotated[str, typer.Option("--quant", help=QUANT_HELP)] = "none",
    time_budget: Annotated[
        float | None,
        typer.Option(
            "--time-budget",
            help="Minutes: probe this machine's speed, then cut steps, val examples and LR runs to fit.",
        ),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a step bar per run.")] = True,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            help="Local workers on the study, this process as worker 0 and N-1 processes (threads shared out); "
            "more join with `loratune worker`.",
        ),
    ] = 1,
) -> None:
    """Search LoRA hyperparameters with real training runs and pick the cheapest config near the best."""
    from loratune.search.config import SearchConfig
    from loratune.search.saved import SEARCH_JSON, saved_for_resume

    if resume:
        stored = saved_for_resume(out, storage=storage)
        # The search's options come from the folder; what this invocation does besides comes from its flags.
        config = replace(
            stored.config,
            train_final=train_final,
            final_steps=final_steps,
            threads=threads,
            time_budget=None,
            device=device,  # where this sitting runs; the study's runs stay comparable across devices
        )
        console.print(
            f"resuming the {config.strategy} search in {escape(str(out))} with its saved options", soft_wrap=True
        )
    else:
        config = SearchConfig(
            model=model,
            data=data,
            val_data=val_data,
            strategy=strategy,
            steps=steps,
            batch_size=batch_size,
            max_length=max_length,
            val_examples=val_examples,
            lr=lr,
            lr_runs=lr_runs,
            finalists=finalists,
            max_final_steps=max_final_steps,
            trials=trials,
            pruner=pruner,
            max_r=max_r,
            modules=modules,
            try_dora=try_dora,
            try_layers=try_layers,
            cost=cost,
            tolerance=tolerance,
            max_forgetting=max_forgetting,
            task_type=task_type,
            metric=metric,
            reference=reference,
            export=export,
            task=task,
            seed=seed,
            train_final=train_final,
            final_steps=final_steps,
            threads=threads,
            time_budget=time_budget,
            device=device,
            quant=quant,
        )
        if (out / SEARCH_JSON).is_file():
            raise ConfigError(f"{out} already holds a search", "pass --resume to continue it, or choose another --out")
    from loratune.search.run import run_search
    from loratune.trial.device import resolve_device
    from loratune.trial.runner import quiet_libraries

    resolve_device(config.device)  # `--device cuda` on a machine without one: one line, before the model loads
    if config.quant != "none":
        from loratune.models.quantized import check_bitsandbytes

        check_bitsandbytes()

    quiet_libraries()
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}", "use e.g. --workers 2")
    result = run_search(config, out, log=print_event, storage=storage, progress=progress and workers == 1,
                        workers=workers)  # fmt: skip
    print_result(result, out)


def print_event(event: SearchEvent) -> None:
    """How the terminal shows each stage event (the library prints nothing itself)."""
    from loratune.search import events as ev

    if isinstance(event, ev.ModelLoading):
        console.print(f"[bold]loading[/] {escape(event.model)} …", highlight=False, soft_wrap=True)
    elif isinstance(event, ev.StudyOpened):
        from loratune.cli.interrupt import keep_note

        keep_note(event.resume_note())  # what Ctrl-C prints from here on (cli/app.py, exit 130)
    elif isinstance(event, ev.TrialsRecovered):
        numbers = ", ".join(str(n) for n in event.numbers)
        err_console.print(
            f"[yellow]recovered:[/] trial(s) {numbers} were left running by a killed search; "
            "marked failed, their configs run again",
            highlight=False,
            soft_wrap=True,
        )
    elif isinstance(event, ev.SearchStarted):
        console.print(
            f"{event.strategy} search on {escape(event.model)}: {event.n_train} train / {event.n_val} val examples, "
            f"{event.steps} steps × batch {event.batch_size} per run; baseline {escape(event.baseline.label())} "
            f"at lr {event.base_lr:g}"
            + (f"; {event.finished_before} finished run(s) already in the study" if event.finished_before else ""),
            highlight=False,
            soft_wrap=True,
        )
    elif isinstance(event, ev.BudgetSized):
        console.print(
            f"time budget {event.minutes:g} min: {event.steps} steps, {event.val_examples} val examples, "
            f"{event.lr_runs} LR run(s) per variant — measured {event.seconds_per_step:.2f} s/step, "
            f"{event.seconds_per_eval_example:.3f} s per eval example; ~{event.planned_runs} runs ≈ "
            f"{_duration(event.estimated_seconds)}",
            highlight=False,
            soft_wrap=True,
        )
    elif isinstance(event, ev.WorkersStarted):
        again = f" ({event.running} still running from before)" if event.running else ""
        here = "; this process trains as worker 0" if event.here else ""
        console.print(
            f"{event.started} worker process(es) started{again}{here}; their logs: {escape(str(event.logs))}",
            highlight=False,
            soft_wrap=True,
        )
    elif isinstance(event, ev.StageStarted):
        console.print(f"[bold cyan]stage {escape(event.name)}[/]", highlight=False, soft_wrap=True)
    elif isinstance(event, ev.RunStarted):
        of = f" of ~{event.total_estimate}" if event.total_estimate else ""
        cfg = event.config
        console.print(
            f"[dim]run {event.index}{of}[/] {escape(cfg.variant.label())} lr {cfg.learning_rate:g} "
            f"[dim]({escape(cfg.stage)})[/]",
            highlight=False,
            soft_wrap=True,
        )
    elif isinstance(event, ev.RunFinished):
        rec = event.record
        if rec.stage == "optuna" and rec.variant is not None:
            console.print(
                f"  trial {rec.number:3d} {escape(rec.variant.label()):40s} lr {rec.learning_rate or 0:<8g} "
                f"{rec.state.lower():8s} ppl {rec.val_ppl:.4f}",
                highlight=False,
                soft_wrap=True,
            )
    elif isinstance(event, ev.VariantScored):
        label = escape(event.variant.label())
        if event.ppl is None:
            console.print(
                f"  {label:40s} no finite result (diverged or failed at every LR)", highlight=False, soft_wrap=True
            )
        else:
            console.print(
                f"  {label:40s} ppl {event.ppl:.4f} at lr {event.learning_rate:g}", highlight=False, soft_wrap=True
            )
    elif isinstance(event, ev.EtaUpdate):
        console.print(
            f"[dim]  about {_duration(event.seconds_left)} left: ~{event.runs_left} run(s) × "
            f"{event.seconds_per_run:.0f} s[/]",
            highlight=False,
            soft_wrap=True,
        )
    elif isinstance(event, ev.FinalTraining):
        console.print(
            f"[bold]training the final adapter[/] ({event.steps or '1 epoch of'} steps) …",
            highlight=False,
            soft_wrap=True,
        )


def _duration(seconds: float) -> str:
    s = max(0, round(seconds))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def _print_ladder(result: SearchResult) -> None:
    """Each finalist's perplexity (best LR) at the search's length and at each rung."""
    from loratune.search.ladder import across_lengths

    ladder = result.outcome.ladder
    levels = [result.scores, *(r.scores for r in ladder.rungs)]
    table = Table(title="fidelity ladder (val ppl at the best LR per length)")
    table.add_column("variant", no_wrap=True)
    for steps in [ladder.base_steps, *(r.steps for r in ladder.rungs)]:
        table.add_column(f"{steps} steps", justify="right", no_wrap=True)
    for v in ladder.climbers:
        cells = across_lengths(v, levels)
        mark = " (challenger)" if v == ladder.challenger else ""
        mark += " ◀ chosen" if v == result.choice.chosen.variant else ""
        table.add_row(escape(v.label()) + mark,
                      *(f"{c.ppl:.4f} @ {c.learning_rate:g}" if c and math.isfinite(c.ppl) else "—" for c in cells))  # fmt: skip
    console.print(table)
    if ladder.challenger is not None:
        console.print("challenger: the best variant's family at --max-r on every linear layer (short runs cannot "
                      "show what capacity buys)", highlight=False, soft_wrap=True)  # fmt: skip
    if not ladder.ranking_held() and result.outcome.short_choice is not None:
        short = result.outcome.short_choice.chosen.variant.label()
        console.print(f"the ranking changed with length: the short runs picked {escape(short)}", highlight=False,
                      soft_wrap=True)  # fmt: skip


def print_result(result: SearchResult, out: Path) -> None:
    chosen = result.choice.chosen.variant
    table = Table(title="variants (best LR each; runs = runs trained)")
    table.add_column("variant", no_wrap=True)  # a wrapped label reads as two variants
    # a classifier's search also shows validation accuracy and macro-F1 (the knee may rank by them: --metric)
    cls = any(s.best.result is not None and s.best.result.val_accuracy_after is not None for s in result.scores)
    for name in ("lr", "val ppl", *(("val acc", "val F1") if cls else ()), "params", "peak mem", "runs"):
        table.add_column(name, justify="right", no_wrap=True)
    for s in result.scores:
        r = s.best.result
        mark = " ◀ chosen" if s.variant == chosen else ""
        table.add_row(
            escape(s.variant.label()) + mark,
            f"{s.learning_rate:g}",
            f"{s.ppl:.4f}" if math.isfinite(s.ppl) else "—",
            *((_pct(r.val_accuracy_after if r else None), _pct(r.val_f1_after if r else None)) if cls else ()),
            f"{r.trainable_params:,}" if r else "—",
            f"{r.peak_memory_bytes / 2**20:,.0f} MiB" if r and r.peak_memory_bytes else "—",
            str(s.runs_trained),
        )
    console.print(table)
    ladder = result.outcome.ladder
    if ladder is not None and ladder.rungs:
        _print_ladder(result)
    cached = f", {result.runs_from_cache} answered from the cache" if result.runs_from_cache else ""
    console.print(
        f"{result.runs_trained} run(s) trained{cached}, {result.tokens:,} training tokens",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"[bold green]chosen:[/] {escape(chosen.label())} — {escape(result.choice.reason())}",
        highlight=False,
        soft_wrap=True,
    )
    for p in result.written:
        console.print(f"wrote {escape(str(p))}", highlight=False, soft_wrap=True)
    if result.final is not None:
        f = result.final
        console.print(
            f"final adapter: val ppl {_ppl(f.val_ppl_before)} → {_ppl(f.val_ppl_after)}, "
            f"saved to {escape(str(out / 'adapter'))}",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"done in {result.seconds:.0f} s — see {escape(str(out / 'best_config.json'))}", highlight=False, soft_wrap=True
    )
    console.print(f"next: loratune report {escape(str(out))}", highlight=False, soft_wrap=True)


def _pct(v: float | None) -> str:
    return f"{100 * v:.1f} %" if v is not None else "—"


def _ppl(v: float | None) -> str:
    return f"{v:.3f}" if v is not None else "—"


__all__ = ["print_event", "print_result", "search"]
