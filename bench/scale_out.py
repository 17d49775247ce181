"""How much faster is a search with two workers than with one, and does it pick the same config?

The demo's staged search and a 16-trial optuna search on SmolLM2-135M-Instruct with the demo QA data, each
run with 1 worker (in-process) and with 2 local worker processes (``run_search(workers=2)``: Optuna's
journal file, one torch thread per worker), side by side in one run, each from an empty folder. Per
strategy: wall-clock seconds of each, the speedup, total training tokens, whether the pick (and for staged
the whole ``best_config.json`` but its timings) is identical, and runs trained twice (must be 0). Output:
``bench/results/scale_out.json``::

    {"staged": {"speedup", "same_pick", "duplicate_runs", …}, "optuna": {"speedup", "duplicate_runs", …}}

Sized for ≤ 15 minutes on an idle 2-core machine: fewer steps (12, the demo trains 30; fewer still when a
short probe of this machine says 12 would not fit) and validation examples (32, the demo uses 64) than
``make demo``, and without the fidelity ladder (``finalists=0``) in these two, so that they measure the
strategies' own parallelism; both share those per-run settings, recorded in the JSON. The LR is the
demo's: the rule's for the run length, every variant's sweep walking until its best LR is bracketed (up to
5 runs). ``--ladder`` adds a third pair, ``staged_ladder``: the staged search with its ladder
(``--finalists 3``, one rung at 3× the steps), whose rung runs go out to the workers like a stage's
(about 10 minutes more). The speedup
counts everything a user waits for: the workers' start (each loads the model) included. Targets: staged
≥ 1.6×, optuna ≥ 1.8×, the same staged pick, no duplicate runs.

    .venv/bin/python bench/scale_out.py            # the measurement (machine otherwise idle)
    .venv/bin/python bench/scale_out.py --ladder   # … and the staged search with its fidelity ladder
    .venv/bin/python bench/scale_out.py --tiny     # a dry run on a 2-layer model: checks the script only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from loratune.paths import write_atomic
from loratune.search import SearchConfig, run_search
from loratune.search.config import trial_code_hash

ROOT = Path(__file__).resolve().parent
WORKERS = (1, 2)
BUDGET_S = 14 * 60  # the whole bench, estimated from a probe (≤ 15 min asked)
TARGETS = {"staged.speedup": ">= 1.6", "optuna.speedup": ">= 1.8", "staged.same_pick": "true", "duplicate_runs": "0"}


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def configs(tiny: Path | None, data: str) -> dict[str, SearchConfig]:
    if tiny is not None:  # a dry run: seconds, not minutes
        base = SearchConfig(model=str(tiny), data=data, steps=2, batch_size=2, max_length=48, val_examples=4,
                            lr=5e-3, lr_runs=2, max_r=4, export="peft", threads=1, finalists=0)  # fmt: skip
        return {"staged": base, "optuna": replace(base, strategy="optuna", trials=4)}
    # The demo's search (make demo), with 12 steps and 32 validation examples so all four runs fit 15 min,
    # without the fidelity ladder (``--ladder`` measures it: ``with_ladder``).
    # Its LR as the demo's: the rule's for the run length, each variant's sweep walking until bracketed.
    base = SearchConfig(model="smollm2-135m", data="demo", steps=12, batch_size=4, max_length=128, val_examples=32,
                        max_r=32, export="peft,axolotl", threads=1, finalists=0)  # fmt: skip
    return {"staged": base, "optuna": replace(base, strategy="optuna", trials=16)}


LADDER_FACTOR = 3  # the ladder pair's one rung: 3x the search's steps (ladder.RUNG_FACTOR)


def with_ladder(cfgs: dict[str, SearchConfig]) -> dict[str, SearchConfig]:
    """``cfgs`` and the staged search with its fidelity ladder: three finalists, one rung at 3x the steps."""
    c = cfgs["staged"]
    return {**cfgs, "staged_ladder": replace(c, finalists=3, max_final_steps=LADDER_FACTOR * c.steps)}


def fit_steps(cfgs: dict[str, SearchConfig], budget_s: float) -> tuple[dict[str, SearchConfig], dict[str, Any]]:
    """Probe this machine (``search.timebudget.probe``: a few steps of the baseline) and cut the steps per
    run (never the LR runs or validation examples: they set the parallelism being measured) until the
    whole bench's estimate — each search once with 1 worker and once with 2 (at the target speedup), plus
    the model loads — fits ``budget_s``. The estimate errs long (pruned optuna trials count as full)."""
    from loratune.search.run import load_inputs, staged_options
    from loratune.search.staged import planned_variants
    from loratune.search.timebudget import planned_runs, probe, run_seconds

    c = cfgs["staged"]
    inputs = load_inputs(c)
    settings = c.train_settings(c.lr or inputs.recommended_lr, inputs.compute_dtype)
    spec = inputs.baseline.adapter_spec(inputs.anatomy.num_layers)
    tp = probe(inputs.runner, spec, settings, inputs.train, list(inputs.val))
    variants = planned_variants(inputs.baseline, staged_options(c))
    load_s = 20.0  # per search: the coordinator's model load, and the workers' (in parallel)

    def total(steps: int) -> float:
        return sum(
            planned_runs(cfg, variants) * run_seconds(tp, replace(cfg, steps=steps), 0, len(inputs.val)) * (1 + 1 / 1.8)
            + 2 * load_s
            for cfg in cfgs.values()
        )

    steps = c.steps
    while steps > 6 and total(steps) > budget_s:
        steps -= 1
    record = {
        "seconds_per_step": round(tp.seconds_per_step, 4),
        "seconds_per_eval_example": round(tp.seconds_per_eval_example, 4),
        "steps": steps,
        "estimated_seconds": round(total(steps)),
    }
    return {k: replace(v, steps=steps) for k, v in cfgs.items()}, record


def _records(out: Path) -> list[Any]:
    from loratune.search.storage import STUDY_JOURNAL, read_journal_records
    from loratune.search.study import read_study_records

    if (out / STUDY_JOURNAL).is_file():
        return read_journal_records(out / STUDY_JOURNAL)
    return read_study_records(out / "study.db")


def duplicate_runs(out: Path) -> int:
    """Configs trained more than once in the study (a cache answer is not a run)."""
    trained = Counter(r.key for r in _records(out) if r.result is not None and r.cached_study is None)
    return sum(n - 1 for n in trained.values() if n > 1)


def median_run_seconds(out: Path) -> float:
    """The median wall time of a full (not pruned) trained run: with two workers on two cores, how much each
    run slows down beside the other (shared caches and memory bandwidth) — the ceiling on the speedup."""
    walls = sorted(r.result.wall_seconds for r in _records(out)
                   if r.result is not None and r.cached_study is None and r.result.status == "ok")  # fmt: skip
    return round(walls[len(walls) // 2], 2) if walls else float("nan")


def _comparable(best: dict[str, Any]) -> dict[str, Any]:
    """best_config.json without what a clock decides (tokens/s, seconds) — what must be identical."""

    def strip(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in ("wall_seconds", "tokens_per_second", "seconds")}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return dict(strip(best))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="dry run on a tiny random model (checks the script)")
    parser.add_argument("--ladder", action="store_true", help="also the staged search with its fidelity ladder")
    parser.add_argument("--work", type=Path, default=ROOT / "work" / "scale_out")
    parser.add_argument("--out", type=Path, default=None, help="results file (default bench/results/scale_out.json)")
    args = parser.parse_args()
    os.environ.setdefault("LORATUNE_THREADS", "1")
    tiny = None
    data = "demo"
    if args.tiny:
        sys.path.insert(0, str(ROOT.parent / "tests" / "search"))
        from tiny import make_qa_file, make_tiny_model  # type: ignore[import-not-found]

        tiny = make_tiny_model(args.work / "tiny-model")
        data = str(make_qa_file(args.work / "qa.jsonl"))
    results_path = args.out or (args.work / "scale_out.json" if args.tiny else ROOT / "results" / "scale_out.json")

    from loratune.trial.runner import quiet_libraries

    quiet_libraries()
    report: dict[str, Any] = {}
    started = time.perf_counter()
    cfgs, sized = fit_steps(configs(tiny, data), BUDGET_S)
    if args.ladder:
        cfgs = with_ladder(cfgs)
    log(f"measured {sized['seconds_per_step']:.2f} s/step: {sized['steps']} steps per run, "
        f"about {sized['estimated_seconds'] / 60:.0f} min in all")  # fmt: skip
    for strategy, config in cfgs.items():
        runs: dict[int, Any] = {}
        for n in WORKERS:
            out = args.work / f"{strategy}-{n}w"
            shutil.rmtree(out, ignore_errors=True)
            log(f"{strategy} search with {n} worker(s) → {out}")
            t0 = time.perf_counter()
            result = run_search(config, out, workers=n)
            wall = time.perf_counter() - t0
            best = json.loads((out / "best_config.json").read_text())
            runs[n] = {"seconds": round(wall, 1), "result": result, "best": best, "dup": duplicate_runs(out),
                       "run_s": median_run_seconds(out)}  # fmt: skip
            log(f"  {wall:.0f} s, {result.runs_trained} runs trained, {result.tokens:,} tokens, "
                f"pick {result.choice.chosen.variant.label()} lr {result.choice.chosen.learning_rate:g}")  # fmt: skip
        one, two = runs[1], runs[2]
        pick = [r["result"].choice.chosen for r in (one, two)]
        same_pick = pick[0].variant == pick[1].variant and pick[0].learning_rate == pick[1].learning_rate
        report[strategy] = {
            "speedup": round(one["seconds"] / two["seconds"], 3),
            "seconds": {"1_worker": one["seconds"], "2_workers": two["seconds"]},
            "tokens": {"1_worker": one["result"].tokens, "2_workers": two["result"].tokens},
            "runs_trained": {"1_worker": one["result"].runs_trained, "2_workers": two["result"].runs_trained},
            "median_run_seconds": {"1_worker": one["run_s"], "2_workers": two["run_s"]},
            "same_pick": same_pick,
            "same_best_config": _comparable(one["best"]) == _comparable(two["best"]),
            "pick": {"1_worker": pick[0].variant.label(), "2_workers": pick[1].variant.label()},
            "duplicate_runs": one["dup"] + two["dup"],
        }
        log(f"{strategy}: speedup {report[strategy]['speedup']:.2f}×, same pick: {same_pick}, "
            f"duplicate runs: {report[strategy]['duplicate_runs']}")  # fmt: skip
    c = cfgs["staged"]
    report["settings"] = {
        "model": c.model if tiny is None else "tiny (2 layers, hidden 32) — a dry run, not a measurement",
        "data": "demo" if tiny is None else "48 synthetic QA rows",
        "per_run": {
            "steps": c.steps,
            "batch_size": c.batch_size,
            "max_length": c.max_length,
            "val_examples": c.val_examples,
            "lr_runs": c.lr_runs,
            "lr": c.lr,
            "max_r": c.max_r,
            "finalists": c.finalists,
        },  # fmt: skip
        "optuna_trials": cfgs["optuna"].trials,
        "staged_ladder": {
            "finalists": cfgs["staged_ladder"].finalists,
            "rung_steps": cfgs["staged_ladder"].max_final_steps,
        }
        if "staged_ladder" in cfgs
        else None,
        "reduced_from_demo": f"steps {c.steps} (demo 30), {c.val_examples} val examples (demo 64): to fit 15 min",
        "sized_by_probe": sized,
        "workers": list(WORKERS),
        "threads_per_worker": 1,
        "local_storage": "1 worker: SQLite study.db; 2 workers: Optuna journal file study.journal",
    }
    report["targets"] = TARGETS
    report["machine"] = {"cpu": platform.machine(), "cores": os.cpu_count()}
    report["code"] = trial_code_hash()
    report["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(results_path, json.dumps(report, indent=1) + "\n")
    log(f"wrote {results_path}")


if __name__ == "__main__":
    main()
