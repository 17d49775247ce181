"""Does a very simple classification task need only r = 1–4, as the seed says (000 §1.2 기준 1)?

A rank sweep on the demo classification data (``--data demo-cls``: is a stdlib docstring's first sentence
about a class or a function; 540 train / 60 val, balanced) with the embedded all-MiniLM-L6-v2 as
BertForSequenceClassification: r = 1, 2, 4, 8, 16 on query, value (alpha = 2r), every rank at the same
LR candidates (the best LR of each rank is kept, as the search does) and several seeds (LoRA init and
data order), the same steps for all. The head (PEFT's SEQ_CLS modules_to_save) trains in every run.

    .venv/bin/python bench/cls_rank_sweep.py            # ~10 min on 2 cores
    .venv/bin/python bench/cls_rank_sweep.py --table    # the README table from the saved results
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "results" / "cls_rank_sweep.json"
RANKS = (1, 2, 4, 8, 16)
LRS = (5e-4, 2e-3)
SEEDS = (0, 1, 2)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from loratune.anatomy.targets import TargetSpec, parse_targets
    from loratune.budget import AdapterSpec
    from loratune.data.classification import read_cls
    from loratune.trial import TrainSettings
    from loratune.trial.cls_runner import ClassifierRunner
    from loratune.trial.runner import quiet_libraries
    from loratune.trial.seq_cls import labels_of, prepare_cls

    quiet_libraries()
    raw = read_cls("demo-cls")
    labels = labels_of(raw)
    runner = ClassifierRunner(args.model, labels=labels, threads=args.threads)
    data = prepare_cls(raw, runner.tokenizer, max_length=64)
    rows = []
    t0 = time.perf_counter()
    for r in RANKS:
        for seed in SEEDS:
            best: dict[str, Any] | None = None
            for lr in LRS:
                spec = AdapterSpec(TargetSpec(parse_targets(args.targets)), r=r, alpha=2 * r)
                settings = TrainSettings(
                    learning_rate=lr, batch_size=16, max_steps=args.steps, max_length=64, seed=seed, warmup_ratio=0.1
                )
                res = runner.run(spec, settings, data.train, data.val, progress=False, measure_memory=False)
                row = {
                    "r": r,
                    "seed": seed,
                    "learning_rate": lr,
                    "val_loss": res.val_loss_after,
                    "val_accuracy": res.val_accuracy_after,
                    "val_f1": res.val_f1_after,
                    "trainable_params": res.trainable_params,
                    "head_params": res.extra.get("head_params"),
                    "seconds": round(res.wall_seconds, 1),
                }
                print(json.dumps(row), flush=True)
                if best is None or (row["val_accuracy"], -row["val_loss"]) > (best["val_accuracy"], -best["val_loss"]):
                    best = row
            assert best is not None
            rows.append(best)
    summary = []
    for r in RANKS:
        mine = [x for x in rows if x["r"] == r]
        accs = [x["val_accuracy"] for x in mine]
        summary.append(
            {
                "r": r,
                "trainable_params": mine[0]["trainable_params"],
                "val_accuracy_mean": statistics.mean(accs),
                "val_accuracy_min": min(accs),
                "val_accuracy_max": max(accs),
                "val_f1_mean": statistics.mean(x["val_f1"] for x in mine),
                "val_loss_mean": statistics.mean(x["val_loss"] for x in mine),
            }
        )
    return {
        "question": "seed 000 §1.2 기준 1: very simple classification → r = 1–4 is enough",
        "model": args.model,
        "data": f"demo-cls: {len(data.train)} train / {len(data.val)} val, labels {', '.join(labels)}",
        "targets": args.targets,
        "steps": args.steps,
        "batch_size": 16,
        "learning_rates": list(LRS),
        "seeds": list(SEEDS),
        "device": f"cpu ({platform.processor() or platform.machine()}), torch {torch.__version__}",
        "compute_dtype": runner.compute_dtype,
        "seconds": round(time.perf_counter() - t0, 1),
        "summary": summary,
        "runs": rows,
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        "| r | trainable (LoRA + head) | val accuracy, mean of seeds (min–max) | val macro-F1 | val loss |",
        "|---|---|---|---|---|",
    ]
    for s in result["summary"]:
        lines.append(
            f"| {s['r']} | {s['trainable_params']:,} | {100 * s['val_accuracy_mean']:.1f} % "
            f"({100 * s['val_accuracy_min']:.1f}–{100 * s['val_accuracy_max']:.1f}) | {100 * s['val_f1_mean']:.1f} % "
            f"| {s['val_loss_mean']:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    from loratune.paths import write_atomic

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="all-minilm-l6-v2")
    ap.add_argument("--targets", default="query,value")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--table", action="store_true", help="print the README table from --out, run nothing")
    args = ap.parse_args()
    if args.table:
        print(table(json.loads(args.out.read_text())))
        return
    result = run(args)
    write_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print()
    print(table(result))


if __name__ == "__main__":
    main()
