"""How much training does each search strategy spend, and how close does its pick land to the best?

The full grid — r ∈ {2, 4, 8, 16, 32} × alpha ∈ {r, 2r, 4r} × modules ∈ {attention, all-linear}, each
variant with the same short LR tuning (``LRPlan``: the scaled center and one ladder step) — against
``staged`` and ``optuna``, on SmolLM2-135M-Instruct with the demo QA data. Every run gets the same
per-run budget. Output: ``bench/results/search_efficiency.json``::

    {"grid": {"tokens", "best_ppl"}, "strategies": {"staged": {"tokens_fraction", "ppl_gap"}, "optuna": {…}}}

``tokens_fraction`` = training tokens a strategy needed / the grid's; ``ppl_gap`` = its pick's validation
perplexity / the grid's best - 1. Each strategy is its own persisted study (``bench/work/``), run in the
order optuna → staged → grid; a run another study already made with the identical config is borrowed
(same key = same model, data, settings, variant, LR; training is seeded) and still counted in the
borrowing strategy's tokens. Interrupted? Run the same command again: it continues where it stopped.

    LORATUNE_THREADS=1 nohup .venv/bin/python bench/search_efficiency.py > bench/work/search_efficiency.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from loratune.paths import write_atomic
from loratune.search import (
    LRPlan,
    OptunaOptions,
    SearchStudy,
    StagedOptions,
    StagedSearch,
    Variant,
    choose,
    default_storage,
    optuna_search,
    score_variants,
    study_fingerprint,
    trial_code_hash,
    tune_lr,
)
from loratune.search.config import content_digest
from loratune.search.events import RunFinished, SearchEvent, StageStarted, VariantScored
from loratune.search.objective import RunnerObjective
from loratune.search.optuna_strategy import make_sampler_and_pruner
from loratune.search.space import RunConfig

ROOT = Path(__file__).resolve().parent
RANKS = (2, 4, 8, 16, 32)
ALPHA_RATIOS = (1.0, 2.0, 4.0)
MODULES = ("attention", "all-linear")
TOLERANCE = 0.01


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def describe(event: SearchEvent) -> str | None:
    """One log line per strategy event (None: not worth a line here)."""
    if isinstance(event, StageStarted):
        return f"stage {event.name}"
    if isinstance(event, VariantScored):
        label = event.variant.label()
        if event.ppl is None:
            return f"{label:40s} no finite result (diverged or failed at every LR)"
        return f"{label:40s} ppl {event.ppl:.4f} at lr {event.learning_rate:g}"
    if isinstance(event, RunFinished) and event.record.stage == "optuna" and event.record.variant is not None:
        rec, label = event.record, event.record.variant.label()
        return (
            f"trial {rec.number:3d} {label:40s} lr {rec.learning_rate:<8g} {rec.state.lower():8s} ppl {rec.val_ppl:.4f}"
        )
    return None


def strategy_log(prefix: str) -> Callable[[SearchEvent], None]:
    def emit(event: SearchEvent) -> None:
        line = describe(event)
        if line is not None:
            log(f"{prefix} {line}")

    return emit


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=96)
    ap.add_argument("--val", type=int, default=24, help="validation examples (fixed, the same for every run)")
    ap.add_argument("--lr", type=float, default=1e-3, help="base LR at alpha = 2r (short runs want a high LR)")
    ap.add_argument("--lr-runs", type=int, default=2, help="LR runs per variant (the same for every strategy)")
    ap.add_argument("--optuna-trials", type=int, default=16)
    ap.add_argument("--work", type=Path, default=ROOT / "work" / "search_efficiency")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "search_efficiency.json")
    args = ap.parse_args()

    import optuna

    from loratune.models import load_anatomy, resolve_source
    from loratune.search.data import load_search_data
    from loratune.trial import TrainSettings, TrialRunner

    started = time.time()
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' checkpointing renames
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # this script's own choice: one line per run
    settings = TrainSettings(
        learning_rate=args.lr,
        batch_size=args.batch_size,
        max_steps=args.steps,
        max_length=args.max_length,
        warmup_ratio=0.1,
        compute_dtype="bf16",
        seed=0,
    )
    source = resolve_source(args.model)
    runner = TrialRunner(source, compute_dtype=settings.compute_dtype)
    anatomy = load_anatomy(source)
    data = load_search_data("demo", runner.tokenizer, max_length=args.max_length, seed=0, val_examples=args.val)
    val = data.val
    code = trial_code_hash()
    # the same fingerprint `loratune search` gives these runs (one function for both)
    fp = study_fingerprint(
        model=source.label,
        data_digest=content_digest(data.path),
        n_train=len(data.train),
        n_val=len(val),
        n_reference=len(data.reference),
        settings=settings,
        code=code,
    )
    plan = LRPlan(base_lr=args.lr, base_scaling=2.0, max_runs=args.lr_runs)
    # A result is only comparable with results of the same training code: each code version gets its own
    # studies (a resume after a code change starts over instead of mixing old and new runs).
    args.work = args.work / code
    log(f"model {args.model}, {len(data.train)} train / {len(val)} val examples, code {code}, fingerprint {fp}")

    def objective_for(name: str, eval_every: int | None) -> RunnerObjective:
        from dataclasses import replace

        def before(cfg: RunConfig) -> None:
            log(f"[{name}] run {cfg.variant.label()} lr {cfg.learning_rate:g}")

        return RunnerObjective(
            runner,
            anatomy,
            replace(settings, eval_every=eval_every),
            data.train,
            val,
            progress=False,
            before_run=before,
        )

    opt = OptunaOptions(
        n_trials=args.optuna_trials,
        ranks=RANKS,
        alpha_ratios=ALPHA_RATIOS,
        module_sets=MODULES,
        lr_steps=(0, args.lr_runs - 1),  # the grid's LR candidates: center … center·2^(runs-1)
        pruner="halving",
        seed=0,
        tolerance=TOLERANCE,
    )
    grid = SearchStudy(default_storage(args.work / "grid"), fingerprint=fp)
    from loratune.search.baseline import recommended_baseline

    # "recommended" is what `loratune search` starts from (the advice stage's config); "seed" is the
    # seed guide's §4.2 baseline (r=8, alpha=2r, attention only), kept to show how much the start matters.
    baselines = {
        "recommended": (recommended_baseline(anatomy, len(data.train))[0], args.work / "recommended"),
        "seed": (Variant(8, 16.0, "attention"), args.work),
    }
    outcomes: dict[str, dict[str, Any]] = {}
    strategy_studies: list[SearchStudy] = []
    for bname, (baseline, root) in baselines.items():
        log(f"baseline {bname}: {baseline.label()}")
        sampler, pruner = make_sampler_and_pruner(opt, min_resource=args.steps // 2)
        # optuna trains its own runs (borrowed full runs would hide what its pruner saves)
        optuna_study = SearchStudy(default_storage(root / "optuna"), fingerprint=fp, sampler=sampler, pruner=pruner)
        staged_study = SearchStudy(default_storage(root / "staged"), fingerprint=fp, cache_from=(grid, optuna_study))
        for name, st in (("optuna", optuna_study), ("staged", staged_study)):
            if st.recovered:
                log(f"[{bname}/{name}] marked trial(s) {st.recovered}, left running by a killed run, as failed")
        out_optuna = optuna_search(
            optuna_study,
            objective_for(f"{bname}/optuna", args.steps // 2),
            plan,
            opt,
            baseline=baseline,
            log=strategy_log(f"[{bname}/optuna]"),
        )
        log(f"{bname}/optuna: pick {out_optuna.choice.chosen.variant.label()} ppl {out_optuna.choice.chosen.ppl:.4f}")
        staged_opt = StagedOptions(min_r=min(RANKS), max_r=max(RANKS), module_sets=MODULES, tolerance=TOLERANCE)
        out_staged = StagedSearch(
            staged_study,
            objective_for(f"{bname}/staged", None),
            plan,
            staged_opt,
            log=strategy_log(f"[{bname}/staged]"),
        ).run(baseline)
        log(f"{bname}/staged: pick {out_staged.choice.chosen.variant.label()} ppl {out_staged.choice.chosen.ppl:.4f}")
        outcomes[bname] = {
            "baseline": baseline,
            "staged": (out_staged, staged_study),
            "optuna": (out_optuna, optuna_study),
        }
        strategy_studies += [optuna_study, staged_study]

    log("grid: start")
    grid.cache_from = tuple(strategy_studies)
    grid_obj = objective_for("grid", None)
    for modules in MODULES:
        for r in RANKS:
            for ratio in ALPHA_RATIOS:
                v = Variant(r, float(r * ratio), modules)

                def loss_at(lr: float, v: Variant = v) -> float:
                    return grid.run(RunConfig(v, lr, stage="grid"), grid_obj).val_loss

                sweep = tune_lr(loss_at, plan, plan.center(v))
                log(f"[grid] {v.label()}: best lr {sweep.best_lr:g}, val loss {sweep.best_loss:.4f}")

    grid_scores = score_variants(grid.finished())
    grid_best = min(s.ppl for s in grid_scores)
    grid_tokens = grid.tokens(borrowed=True)
    grid_choice = choose(grid_scores, tolerance=TOLERANCE)
    result = {
        "grid": {
            "tokens": grid_tokens,
            "best_ppl": round(grid_best, 5),
            "best": grid_scores[0].variant.label(),
            "knee": grid_choice.chosen.variant.label(),
            "knee_ppl": round(grid_choice.chosen.ppl, 5),
            "variants": len(grid_scores),
            "runs": sum(1 for r in grid.finished() if r.cached_study != "self"),
        },
        "strategies": {},
        "settings": {
            "model": args.model,
            "train_examples": len(data.train),
            "val_examples": len(val),
            "per_run": {k: v for k, v in asdict(settings).items() if k in ("batch_size", "max_steps", "max_length")},
            "lr_plan": asdict(plan),
            "tolerance": TOLERANCE,
            "optuna_trials": args.optuna_trials,
            "pruner": "successive halving (reduction 3, min resource = half the steps)",
        },
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": int(os.environ.get("LORATUNE_THREADS", "0")) or None,
            "torch_threads": _torch_threads(),
        },
        "code": code,
        "elapsed_seconds_this_sitting": round(time.time() - started, 1),
    }
    by_baseline: dict[str, Any] = {}
    for bname, o in outcomes.items():
        entry: dict[str, Any] = {"baseline": o["baseline"].label()}
        for name in ("staged", "optuna"):
            out, st = o[name]
            tokens = st.tokens(borrowed=True)
            c = out.choice
            entry[name] = {
                "tokens": tokens,
                "tokens_fraction": round(tokens / grid_tokens, 4),
                "ppl_gap": round(c.chosen.ppl / grid_best - 1, 5),
                "best_gap": round(c.best.ppl / grid_best - 1, 5),
                "pick": c.chosen.variant.label(),
                "pick_ppl": round(c.chosen.ppl, 5),
                "pick_lr": c.chosen.learning_rate,
                "runs": sum(1 for r in st.finished() if r.cached_study != "self"),
                "pruned": sum(1 for r in st.finished() if r.state == "PRUNED" and r.cached_study != "self"),
            }
        by_baseline[bname] = entry
    # the headline is what `loratune search` does: start from the recommendation
    result["strategies"] = {k: v for k, v in by_baseline["recommended"].items() if k != "baseline"}
    result["by_baseline"] = by_baseline
    write_atomic(args.out, json.dumps(result, indent=2) + "\n")
    log(f"wrote {args.out}")
    print(json.dumps(result, indent=2))
    return 0


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    sys.exit(main())
