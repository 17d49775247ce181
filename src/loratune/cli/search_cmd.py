"""``loratune search MODEL --data demo --strategy staged --out runs/x``: run real trials, pick the knee.

Every run is an Optuna trial in ``<out>/study.db`` (or ``--storage``); ``--resume`` continues a killed
search without rerunning a finished run. Writes ``best_config.json``, ``exports/`` and, with
``--train-final``, ``adapter/``. ``loratune report <out>`` turns the study into HTML.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from loratune.cli.common import ModelArg, console, err_console
from loratune.errors import ConfigError
from loratune.paths import write_atomic

STRATEGIES = ("staged", "optuna")


def search(
    model: ModelArg,
    data: Annotated[str, typer.Option("--data", help="Training data file, or `demo` (the built-in QA set).")] = "demo",
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
    lr_runs: Annotated[int, typer.Option("--lr-runs", help="LR runs per variant (1 = no LR sweep).")] = 2,
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
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a step bar per run.")] = True,
) -> None:
    """Search LoRA hyperparameters with real training runs and pick the cheapest config near the best."""
    options = {
        "model": model,
        "data": data,
        "strategy": strategy,
        "steps": steps,
        "batch_size": batch_size,
        "max_length": max_length,
        "val_examples": val_examples,
        "lr": lr,
        "lr_runs": lr_runs,
        "trials": trials,
        "pruner": pruner,
        "max_r": max_r,
        "modules": modules,
        "try_dora": try_dora,
        "try_layers": try_layers,
        "cost": cost,
        "tolerance": tolerance,
        "max_forgetting": max_forgetting,
        "reference": reference if reference is not None else ("demo" if max_forgetting is not None else "none"),
        "export": export,
        "task": task,
        "seed": seed,
    }
    from loratune.search.final import SEARCH_JSON  # inside: every CLI start imports this module

    saved = out / SEARCH_JSON
    if resume:
        if not saved.is_file():
            raise ConfigError(f"nothing to resume in {out} (no {SEARCH_JSON})", "drop --resume to start a new search")
        stored = json.loads(saved.read_text())
        options, storage = stored["options"], stored.get("storage") or storage
        console.print(f"resuming the {options['strategy']} search in {out} with its saved options")
    elif saved.is_file():
        raise ConfigError(f"{out} already holds a search", "pass --resume to continue it, or choose another --out")
    _validate(options)
    if threads:
        import os

        os.environ["LORATUNE_THREADS"] = str(threads)
    started = time.perf_counter()
    run_search(options, out, storage, progress=progress, train_final=train_final, final_steps=final_steps)
    console.print(f"done in {time.perf_counter() - started:.0f} s — see {out / 'best_config.json'}")
    console.print(f"next: loratune report {out}")


def _validate(o: dict[str, Any]) -> None:
    from loratune.search import COSTS, PRUNERS

    if o["strategy"] not in STRATEGIES:
        raise ConfigError(f"unknown strategy {o['strategy']!r}", f"use one of {', '.join(STRATEGIES)}")
    if o["cost"] not in COSTS:
        raise ConfigError(f"unknown cost {o['cost']!r}", f"use one of {', '.join(COSTS)}")
    if o["pruner"] not in PRUNERS:
        raise ConfigError(f"unknown pruner {o['pruner']!r}", f"use one of {', '.join(PRUNERS)}")
    for name in ("steps", "batch_size", "max_length", "val_examples", "lr_runs", "trials", "max_r"):
        if o[name] < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {o[name]}", "use a positive integer")
    if not 0 <= o["tolerance"] < 1:
        raise ConfigError(f"--tolerance must be in [0, 1), got {o['tolerance']}", "use e.g. 0.01 (1 %)")
    if o["max_forgetting"] is not None and o["max_forgetting"] < 0:
        raise ConfigError(f"--max-forgetting must be >= 0, got {o['max_forgetting']}", "use e.g. 0.05 (5 %)")
    if o["max_forgetting"] is not None and o["reference"] == "none":
        raise ConfigError("--max-forgetting needs reference text", "pass --reference demo (or a file)")


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def run_search(
    o: dict[str, Any], out: Path, storage: str | None, *, progress: bool, train_final: bool, final_steps: int | None
) -> dict[str, Any]:
    from loratune.models import load_anatomy, resolve_source
    from loratune.search import (
        OptunaOptions,
        SearchStudy,
        StagedOptions,
        StagedSearch,
        default_storage,
        fingerprint,
        optuna_search,
    )
    from loratune.search.baseline import plan_for, recommended_baseline
    from loratune.search.data import load_search_data
    from loratune.search.final import SEARCH_JSON, best_config, write_outputs
    from loratune.search.objective import RunnerObjective, settings_identity
    from loratune.search.optuna_strategy import make_sampler_and_pruner
    from loratune.search.space import parse_module_sets
    from loratune.trial import TrainSettings, TrialRunner
    from loratune.trial.runner import quiet_libraries

    quiet_libraries()
    source = resolve_source(o["model"])
    anatomy = load_anatomy(source)
    module_sets = parse_module_sets(o["modules"])
    console.print(f"[bold]loading[/] {source.label} …")
    runner = TrialRunner(source)
    prepared = load_search_data(
        o["data"],
        runner.tokenizer,
        max_length=o["max_length"],
        seed=o["seed"],
        val_examples=o["val_examples"],
        reference=o["reference"],
    )
    val, ref = prepared.val, prepared.reference
    baseline, rec_lr, rec = recommended_baseline(anatomy, len(prepared.train), o["task"])
    base_lr = o["lr"] or rec_lr
    settings = TrainSettings(
        learning_rate=base_lr,
        batch_size=o["batch_size"],
        max_steps=o["steps"],
        max_length=o["max_length"],
        warmup_ratio=0.1,
        seed=o["seed"],
        compute_dtype=runner.compute_dtype,
        eval_every=max(1, o["steps"] // 2) if o["strategy"] == "optuna" and o["pruner"] != "none" else None,
    )
    import loratune

    fp = fingerprint(
        {
            "loratune": loratune.__version__,  # another version may train differently: no mixing
            "model": source.label,
            "data": _file_digest(prepared.path),
            "n_train": len(prepared.train),
            "val": len(val),
            "reference": len(ref),
            **settings_identity(settings),
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    storage_url = storage or default_storage(out)
    sampler = pruner = None
    opt = None
    if o["strategy"] == "optuna":
        opt = OptunaOptions(
            n_trials=o["trials"],
            ranks=tuple(r for r in (2, 4, 8, 16, 32, 64, 128) if r <= o["max_r"]),
            module_sets=module_sets,
            try_dora=o["try_dora"],
            pruner=o["pruner"],
            seed=o["seed"],
            cost=o["cost"],
            tolerance=o["tolerance"],
            max_forgetting=o["max_forgetting"],
            # the same LR candidates the staged sweep walks: center and the next ladder step(s)
            lr_steps=(-((o["lr_runs"] - 1) // 2), o["lr_runs"] - 1 - (o["lr_runs"] - 1) // 2),
        )
        sampler, pruner = make_sampler_and_pruner(opt, min_resource=max(1, o["steps"] // 2))
    study = SearchStudy(storage_url, fingerprint=fp, sampler=sampler, pruner=pruner)
    write_atomic(
        out / SEARCH_JSON,
        json.dumps({"options": o, "storage": storage, "storage_url": storage_url, "fingerprint": fp}, indent=2) + "\n",
    )
    if study.recovered:
        err_console.print(
            f"[yellow]recovered:[/] trial(s) {study.recovered} were left running by a killed search; "
            "marked failed, their configs run again"
        )
    done_before = len(study.finished())
    console.print(
        f"{o['strategy']} search on {source.label}: {len(prepared.train)} train / {len(val)} val examples, "
        f"{o['steps']} steps × batch {o['batch_size']} per run; baseline {baseline.label()} at lr {base_lr:g}"
        + (f"; {done_before} finished run(s) already in the study" if done_before else "")
    )
    counter = {"n": 0}

    def before_run(cfg: Any) -> None:
        counter["n"] += 1
        console.print(
            f"[dim]run {counter['n']}[/] {cfg.variant.label()} lr {cfg.learning_rate:g} [dim]({cfg.stage})[/]"
        )

    objective = RunnerObjective(
        runner, anatomy, settings, prepared.train, val, ref, progress=progress, before_run=before_run
    )
    plan = plan_for(baseline, base_lr, o["lr_runs"])

    def log(msg: str) -> None:
        console.print(msg if not msg.startswith("stage") else f"[bold cyan]{msg}[/]", highlight=False)

    if o["strategy"] == "staged":
        staged_opt = StagedOptions(
            max_r=o["max_r"],
            module_sets=module_sets,
            try_dora=o["try_dora"],
            try_layers=o["try_layers"],
            cost=o["cost"],
            tolerance=o["tolerance"],
            max_forgetting=o["max_forgetting"],
        )
        outcome = StagedSearch(study, objective, plan, staged_opt, log=log).run(baseline)
    else:
        assert opt is not None
        outcome = optuna_search(study, objective, plan, opt, baseline=baseline, log=log)

    training = dict(rec.get("training") or {})
    best = best_config(outcome, study, anatomy, source.label, training, replace(settings, eval_every=None).to_dict())
    exports = [e.strip() for e in o["export"].split(",") if e.strip() and e.strip() != "none"]
    written = write_outputs(out, best, exports)
    _summary(study, outcome)
    console.print(f"[bold green]chosen:[/] {outcome.choice.chosen.variant.label()} — {outcome.choice.reason()}")
    for p in written:
        console.print(f"wrote {p}")
    if train_final:
        final = replace(
            settings,
            learning_rate=outcome.choice.chosen.learning_rate,
            max_steps=final_steps,
            epochs=1.0,
            eval_every=None,
        )
        console.print(f"[bold]training the final adapter[/] ({final_steps or '1 epoch of'} steps) …")
        spec = outcome.choice.chosen.variant.adapter_spec(anatomy.num_layers)
        res = runner.run(spec, final, prepared.train, val, ref, save_dir=out / "adapter", progress=progress)
        best["final"] = res.to_dict()
        write_outputs(out, best, [])
        console.print(
            f"final adapter: val ppl {res.val_ppl_before:.3f} → {res.val_ppl_after:.3f}, saved to {out / 'adapter'}"
        )
    return best


def _summary(study: Any, outcome: Any) -> None:
    from loratune.search import score_variants

    chosen = outcome.choice.chosen.variant
    table = Table("variant", "best lr", "val ppl", "trainable", "peak mem", "runs", title="variants (best LR each)")
    for s in score_variants(study.finished()):
        r = s.best.result
        mark = " ◀ chosen" if s.variant == chosen else ""
        table.add_row(
            s.variant.label() + mark,
            f"{s.learning_rate:g}",
            f"{s.ppl:.4f}" if math.isfinite(s.ppl) else "—",
            f"{r.trainable_params:,}" if r else "—",
            f"{r.peak_memory_bytes / 2**20:,.0f} MiB" if r and r.peak_memory_bytes else "—",
            str(len(s.runs)),
        )
    console.print(table)
    trained = sum(1 for r in study.finished() if r.cached_study is None)
    console.print(f"{trained} run(s) trained, {study.tokens():,} training tokens")
