"""Does the search's pick hold when it is trained for real? Short runs vs one full epoch, with and
without the fidelity ladder, and the zero-trial LR advice and ``recommend --probe`` against the truth.

Two tasks on SmolLM2-135M-Instruct (the real pretrained model), each a train file and a separate
validation file (``bench/fidelity_tasks.py``, written at first use under ``bench/work/``):
``qa`` (the demo's stdlib QA) and ``module`` (classification as generation: a docstring's first
sentence → its module's name, 10 labels). Per task:

1. **ground truth**: a full-length grid — every variant of the staged search's space (r ∈ {4, 8, 16, 32}
   × alpha ∈ {r, 2r, 4r} × {attention, all-linear}) trained for one epoch at 3 LRs (the full-length LR
   rule's value at the source's alpha 32, taken as the LR for alpha/r = 2 and scaled to the variant's
   alpha/r, ×½, ×1, ×2), and on by ×2 steps while the best is at an edge (up to 6 runs). A variant's
   full-length perplexity is its best over those. The grid's LRs never follow the advice under test: a
   change to the rule leaves the truth (and its persisted runs) as they are.
2. **short grid**: the same 24 variants at the search's run length (LR over 3+ values around the search's
   own center, the same walk): the Spearman correlation between short-run and full-length perplexity over the variants.
3. **strategies**: ``loratune search`` (``run_search``, the real path) staged and optuna with the ladder
   on (``--finalists 3``); the same study gives the no-ladder pick (the knee over its short runs) and its
   tokens. Regret = the pick's full-length perplexity (its LR re-tuned there, as the grid's) / the grid's
   best − 1; tokens as a fraction of the full grid's (every run the grid's protocol asks for counted as
   trained, whether or not an earlier sitting or a strategy's study had it already).
   ``regret_as_picked``: the pick as the search hands it over (variant and LR) trained for one epoch —
   what a user gets who does not re-tune the LR.
4. **advice**: the recommendation (adapter + the LR rule for one epoch) trained for one epoch;
   **probe**: the same adapter at the LR ``recommend --probe`` measures (range test, ≤ 60 steps).

Every run is persisted (SQLite studies under ``bench/work/fidelity/<code>/``); identical runs are borrowed
across studies (same key = same model, data, settings, variant, LR; training is seeded) and still count in
the borrower's tokens. Interrupted? Run it again: it continues where it stopped. Output:
``bench/results/fidelity.json`` (``tasks.<task>.{spearman, advice_regret, probe_regret}``,
``tasks.<task>.strategies.<staged|staged_ladder|optuna|optuna_ladder>.{regret_full, tokens_fraction}``).

    nohup .venv/bin/python bench/fidelity.py > bench/work/fidelity.log 2>&1 &   # ~1 h on 2 idle cores
    .venv/bin/python bench/fidelity.py --tiny                                     # a dry run (minutes)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from loratune.paths import write_atomic
from loratune.search import SearchConfig, SearchStudy, Variant, default_storage, run_search, score_variants
from loratune.search.config import trial_code_hash
from loratune.search.events import RunFinished, SearchEvent, StageStarted, VariantScored
from loratune.search.lr import LRPlan
from loratune.search.space import RunConfig

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from fidelity_tasks import module_file, qa_file  # noqa: E402

RANKS = (4, 8, 16, 32)
ALPHA_RATIOS = (1.0, 2.0, 4.0)
MODULES = ("attention", "all-linear")
GRID_LR_RUNS = 6  # the grid's LR sweep: 3 values, more while the best is at an edge
GRID_SCALING = 2.0  # the alpha/r the grids' centre LR is taken for (scaled to each variant's alpha/r)
TARGETS = {"strategies.*_ladder.regret_full": "<= 0.01", "strategies.*_ladder.tokens_fraction": "<= 0.15",
           "advice_regret": "<= 0.03"}  # fmt: skip


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


@dataclass
class Task:
    name: str
    train: Path
    val: Path


def grid_variants() -> list[Variant]:
    return [Variant(r, float(r * a), m) for m in MODULES for r in RANKS for a in ALPHA_RATIOS]


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rho: Pearson's r of the ranks (ties get their mean rank)."""

    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        out = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sx = math.sqrt(sum((a - mx) ** 2 for a in rx))
    sy = math.sqrt(sum((b - my) ** 2 for b in ry))
    return cov / (sx * sy) if sx and sy else float("nan")


def describe(prefix: str):  # type: ignore[no-untyped-def]
    def emit(event: SearchEvent) -> None:
        if isinstance(event, StageStarted):
            log(f"{prefix} stage {event.name}")
        elif isinstance(event, VariantScored) and event.ppl is not None:
            label = event.variant.label()
            log(f"{prefix} {label:32s} ppl {event.ppl:.4f} at lr {event.learning_rate:g} [{event.stage}]")
        elif isinstance(event, RunFinished) and event.trained:
            rec = event.record
            label = rec.variant.label() if rec.variant else "?"
            log(f"{prefix}   run {label} lr {rec.learning_rate:g}: ppl {rec.val_ppl:.4f} ({event.seconds:.1f} s)")

    return emit


def run_task(task: Task, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from loratune.search.objective import RunnerObjective
    from loratune.search.run import inputs_fingerprint, load_inputs

    base = SearchConfig(model=args.model, data=str(task.train), val_data=str(task.val), steps=args.steps,
                        batch_size=args.batch_size, max_length=args.max_length, val_examples=args.val,
                        max_r=max(RANKS), export="none", finalists=args.finalists, seed=0)  # fmt: skip
    log(f"[{task.name}] loading")
    inputs = load_inputs(base)
    epoch = base.ladder_top(len(inputs.train))
    log(f"[{task.name}] {len(inputs.train)} train / {len(inputs.val)} val examples; search runs {args.steps} steps, "
        f"one epoch {epoch} steps; base LR {inputs.recommended_lr:g}; baseline {inputs.baseline.label()}")  # fmt: skip
    val = list(inputs.val)[: args.val]
    dtype = inputs.compute_dtype

    def settings_at(steps: int) -> Any:
        return base.train_settings(inputs.recommended_lr, dtype, steps=steps if steps != args.steps else None)

    def fp_at(steps: int) -> str:
        return inputs_fingerprint(inputs, len(val), 0, settings_at(steps))

    def objective_at(steps: int, name: str) -> RunnerObjective:
        def before(cfg: RunConfig) -> None:
            log(f"[{task.name}/{name}] run {cfg.variant.label()} lr {cfg.learning_rate:g} ({steps} steps)")

        return RunnerObjective(inputs.runner, inputs.anatomy, settings_at(steps), inputs.train, val, progress=False,
                               before_run=before)  # fmt: skip

    # 1. the strategies, through the real search path (each in its own folder, resumable)
    outcomes: dict[str, Any] = {}
    for strategy in ("staged", "optuna"):
        config = replace(base, strategy=strategy, trials=args.optuna_trials)
        log(f"[{task.name}/{strategy}] search")
        outcomes[strategy] = run_search(
            config, work / strategy, inputs=inputs, log=describe(f"[{task.name}/{strategy}]")
        )
    # the grids' LR ladder, fixed apart from the advice (see the docstring)
    plan = LRPlan(base_lr=_grid_lr(inputs, args.steps), base_scaling=GRID_SCALING, max_runs=base.lr_runs)

    # 2. the full-length grid, borrowing the strategies' top-rung runs
    full_lr = _grid_lr(inputs, epoch)
    rung_name = f"loratune.rung{epoch}"
    lenders = [SearchStudy(default_storage(work / s), fingerprint=fp_at(epoch), name=rung_name) for s in outcomes]
    grid = SearchStudy(default_storage(work / "grid"), fingerprint=fp_at(epoch), cache_from=tuple(lenders))
    grid_obj = objective_at(epoch, "grid")
    # the grid's cost is the runs this protocol asks for (a study resumed from an older, longer LR walk
    # holds more; those neither count nor decide a variant's score)
    grid_runs: dict[str, int] = {}
    for v in grid_variants():
        _tune(grid, grid_obj, v, plan, plan.snap(full_lr * GRID_SCALING / v.scaling), "grid", grid_runs)
    grid_scores = {s.variant: s for s in score_variants(r for r in grid.finished() if r.key in grid_runs)}
    grid_best = min(s.ppl for s in grid_scores.values())
    grid_tokens = sum(grid_runs.values())
    best_variant = min(grid_scores.values(), key=lambda s: s.ppl).variant
    log(f"[{task.name}] grid: best ppl {grid_best:.4f} ({best_variant.label()})")

    def full_ppl(v: Variant) -> float:
        """The variant's full-length perplexity: the grid's, or (outside the grid) the same 3-LR protocol."""
        if v in grid_scores:
            return grid_scores[v].ppl
        extra = SearchStudy(default_storage(work / "extra"), fingerprint=fp_at(epoch), cache_from=(grid, *lenders))
        _tune(extra, objective_at(epoch, "extra"), v, plan, plan.snap(full_lr * GRID_SCALING / v.scaling), "extra")
        return min(s.ppl for s in score_variants(extra.finished()) if s.variant == v)

    # 3. the short grid, borrowing the strategies' short runs: rank agreement over the variants
    lenders_short = [SearchStudy(default_storage(work / s), fingerprint=fp_at(args.steps)) for s in outcomes]
    short = SearchStudy(default_storage(work / "short"), fingerprint=fp_at(args.steps), cache_from=tuple(lenders_short))
    short_obj = objective_at(args.steps, "short")
    short_runs: dict[str, int] = {}
    for v in grid_variants():
        _tune(short, short_obj, v, plan, plan.center(v), "short", short_runs)
    short_scores = {s.variant: s for s in score_variants(r for r in short.finished() if r.key in short_runs)}
    both = [v for v in grid_variants() if v in short_scores and math.isfinite(short_scores[v].ppl)]
    rho = spearman([short_scores[v].ppl for v in both], [grid_scores[v].ppl for v in both])

    # 4. the strategies' picks at full length: the variant with its LR re-tuned there (regret_full), and the
    # pick as it stands, trained for one epoch at the LR the search hands over (regret_as_picked)
    picked = SearchStudy(default_storage(work / "picked"), fingerprint=fp_at(epoch), cache_from=(grid, *lenders))

    def as_picked(v: Variant, lr: float) -> float:
        return picked.run(RunConfig(v, lr, stage="picked"), objective_at(epoch, "picked")).val_ppl

    strategies: dict[str, Any] = {}
    for name, result in outcomes.items():
        ladder = result.outcome.ladder
        ladder_tokens = sum(t["tokens"] for r in (ladder.to_dict()["rungs"] if ladder else []) for t in r["variants"])
        short_pick = (result.outcome.short_choice or result.choice).chosen
        for key, pick, tokens in ((name, short_pick, result.tokens - ladder_tokens),
                                  (f"{name}_ladder", result.choice.chosen, result.tokens)):  # fmt: skip
            ppl = full_ppl(pick.variant)
            at_lr = as_picked(pick.variant, pick.learning_rate)
            strategies[key] = {
                "regret_full": round(ppl / grid_best - 1, 5),
                "regret_as_picked": round(at_lr / grid_best - 1, 5) if math.isfinite(at_lr) else None,
                "tokens_fraction": round(tokens / grid_tokens, 4),
                "pick": pick.variant.label(),
                "pick_lr": pick.learning_rate,
                "pick_full_ppl": round(ppl, 5),
                "tokens": tokens,
            }
        if ladder is not None:
            strategies[f"{name}_ladder"]["ranking_held"] = ladder.ranking_held()
            strategies[f"{name}_ladder"]["rungs"] = [r.steps for r in ladder.rungs]

    # 5. zero-trial advice and the probe, one epoch each
    from loratune.search.baseline import recommended_baseline

    rec_variant, rec_lr, _rec = recommended_baseline(inputs.anatomy, len(inputs.train), None, total_steps=epoch)
    advice = SearchStudy(default_storage(work / "advice"), fingerprint=fp_at(epoch), cache_from=(grid, *lenders))
    advice_rec = advice.run(RunConfig(rec_variant, rec_lr, stage="advice"), objective_at(epoch, "advice"))
    probe = _probe(inputs, rec_variant, settings_at(epoch), work)
    probe_rec = advice.run(RunConfig(rec_variant, probe["lr"], stage="probe"), objective_at(epoch, "probe"))
    edges = sum(1 for s in grid_scores.values() if s.learning_rate in (min(s.tried), max(s.tried)))
    return {
        "spearman": round(rho, 4),
        "spearman_variants": len(both),
        "advice_regret": round(advice_rec.val_ppl / grid_best - 1, 5),
        "probe_regret": round(probe_rec.val_ppl / grid_best - 1, 5),
        "advice": {"variant": rec_variant.label(), "lr": rec_lr, "full_ppl": round(advice_rec.val_ppl, 5)},
        "probe": {**probe, "full_ppl": round(probe_rec.val_ppl, 5)},
        "strategies": strategies,
        "grid": {
            "best_ppl": round(grid_best, 5),
            "best": best_variant.label(),
            "tokens": grid_tokens,
            "variants": len(grid_scores),
            "runs": len(grid_runs),
            "centre_lr": full_lr,  # the grid LR sweep's centre at alpha/r = GRID_SCALING
            "variants_best_at_an_lr_edge": edges,
            "ppl": {v.label(): round(s.ppl, 5) for v, s in grid_scores.items()},
            "best_lr": {v.label(): s.learning_rate for v, s in grid_scores.items()},
            # the LR rule's premise (advise/lr_rule.py): the best LR times alpha stays put across variants
            "best_lr_times_alpha_median": statistics.median(s.learning_rate * v.alpha for v, s in grid_scores.items()),
        },
        "short_grid": {"ppl": {v.label(): round(s.ppl, 5) for v, s in short_scores.items()}},
        "settings": {
            "train_examples": len(inputs.train),
            "val_examples": len(val),
            "search_steps": args.steps,
            "epoch_steps": epoch,
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "optuna_trials": args.optuna_trials,
            "finalists": args.finalists,
            "search_base_lr": inputs.recommended_lr,
        },  # fmt: skip
    }


def _tune(
    study: SearchStudy, objective: Any, v: Variant, plan: LRPlan, center: float, stage: str,
    made: dict[str, int] | None = None,
) -> None:  # fmt: skip
    """The variant's LR over 3 values (center/2, center, 2·center when the center is best), walking on by
    x2 steps while the best sits at an edge (``tune_lr``, up to ``GRID_LR_RUNS`` runs): a ground truth
    whose LR is not bracketed would not be one. ``made``: run key → training tokens of every run asked."""
    from loratune.search.lr import tune_lr

    def run(lr: float) -> float:
        rec = study.run(RunConfig(v, lr, stage=stage), objective)
        if made is not None:
            made[rec.key] = rec.tokens
        return rec.val_loss

    tune_lr(run, replace(plan, max_runs=GRID_LR_RUNS), center)


def _grid_lr(inputs: Any, steps: int) -> float:
    """The grids' LR for alpha/r = ``GRID_SCALING`` at ``steps`` steps: the rule at the source's alpha 32."""
    from loratune.advise.lr_rule import lora_learning_rate

    return lora_learning_rate(inputs.anatomy.facts.hidden_size, steps).value


def _probe(inputs: Any, variant: Variant, settings: Any, work: Path) -> dict[str, Any]:
    """``recommend --probe``'s range test on this task (cached in ``work``: it is seeded and deterministic)."""
    path = work / "probe.json"
    if path.is_file():
        cached: dict[str, Any] = json.loads(path.read_text())
        return cached
    from loratune.measure.lr_probe import probe_learning_rate

    started = time.perf_counter()
    spec = variant.adapter_spec(inputs.anatomy.num_layers)
    res = probe_learning_rate(inputs.runner, spec, settings, inputs.train)
    out = {"lr": float(res.lr), "reason": res.reason, "seconds": round(time.perf_counter() - started, 1),
           "steps": len(res.lrs)}  # fmt: skip
    write_atomic(path, json.dumps(out) + "\n")
    log(f"probe: lr {res.lr:g} in {out['seconds']} s ({res.reason})")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tasks", default="qa,module")
    ap.add_argument("--train", type=int, default=128, help="training examples per task (one epoch = train/batch)")
    ap.add_argument("--val", type=int, default=24, help="validation examples per task (a separate file)")
    ap.add_argument("--steps", type=int, default=5, help="steps of a search run (≈ 1/8 epoch)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--optuna-trials", type=int, default=16)
    ap.add_argument("--finalists", type=int, default=3)
    ap.add_argument("--work", type=Path, default=ROOT / "work" / "fidelity")
    ap.add_argument("--out", type=Path, default=None, help="default bench/results/fidelity.json")
    ap.add_argument("--tiny", action="store_true", help="dry run on a tiny random model (checks the script only)")
    args = ap.parse_args()

    import optuna

    from loratune.trial.runner import quiet_libraries

    quiet_libraries()
    warnings.filterwarnings("ignore", category=FutureWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.time()
    code = trial_code_hash()
    if args.tiny:  # a dry run: seconds per run, not minutes
        args.train, args.val, args.steps, args.optuna_trials = 40, 6, 2, 4
    # one folder per code version and per sizing: a study never meets runs of other data or settings
    sizing = f"train{args.train}-val{args.val}-steps{args.steps}-bs{args.batch_size}-len{args.max_length}"
    work = args.work / ("tiny" if args.tiny else code) / sizing
    work.mkdir(parents=True, exist_ok=True)
    if args.tiny:
        sys.path.insert(0, str(ROOT.parent / "tests" / "search"))
        from tiny import make_tiny_model  # type: ignore[import-not-found]

        args.model = str(make_tiny_model(work / "tiny-model"))
    out_path = args.out or (work / "fidelity.json" if args.tiny else ROOT / "results" / "fidelity.json")
    makers = {"qa": qa_file, "module": module_file}
    results: dict[str, Any] = {}
    for name in args.tasks.split(","):
        rows = makers[name](args.work, args.train + args.val)
        lines = rows.read_text().splitlines()
        train, val = work / f"{name}-train-{args.train}.jsonl", work / f"{name}-val-{args.val}.jsonl"
        if not train.is_file():
            write_atomic(train, "\n".join(lines[: args.train]) + "\n")
            write_atomic(val, "\n".join(lines[args.train : args.train + args.val]) + "\n")
        results[name] = run_task(Task(name, train, val), args, work / name)
        log(f"[{name}] {json.dumps({k: results[name][k] for k in ('spearman', 'advice_regret', 'probe_regret')})}")
    import torch

    report = {
        "tasks": results,
        "targets": TARGETS,
        "model": args.model if not args.tiny else "tiny (2 layers) — a dry run, not a measurement",
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },  # fmt: skip
        "code": code,
        "elapsed_seconds_this_sitting": round(time.time() - started, 1),
    }
    write_atomic(out_path, json.dumps(report, indent=2) + "\n")
    log(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
