"""How accurate is loratune's training-memory estimate? Estimate vs measured peak, per config.

Measured on the CPU with ``loratune.measure.PeakMemory`` (live tensor storage, the CPU counterpart
of ``torch.cuda.max_memory_allocated``): one real PEFT training step (forward, backward, AdamW) on
random tokens, after an 8-token warm-up step that creates the optimizer states. Models: the real
SmolLM2-135M (30 layers, vocab 49,152) and a tiny GPT-2 (2 layers, 64 wide, GPT-2's vocab 50,257,
dropout 0 so that the model's own dropouts keep no masks). The estimate uses device="cpu" (no CUDA
context; CPU dropout masks are fp32). No CUDA machine was available: the CUDA path is unmeasured.

    .venv/bin/python bench/memory_accuracy.py            # all rows, ~5–10 min on 2 cores
    .venv/bin/python bench/memory_accuracy.py --quick    # 4 rows, for a smoke run
    .venv/bin/python bench/memory_accuracy.py --table    # the README table from the saved results
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "results" / "memory_accuracy.json"


@dataclass(frozen=True)
class Row:
    model: str
    targets: str
    r: int = 8
    method: str = "lora"
    batch_size: int = 1
    seq_len: int = 128
    grad_checkpointing: bool = False
    dtype: str = "fp32"
    attn_impl: str = "sdpa"
    dropout: float = 0.05
    autocast: bool = False


SMOL, TINY = "smollm2-135m", "tiny-gpt2"
# An encoder classifier: all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide) as BertForSequenceClassification with
# 2 labels, its own dropouts (0.1) on as in training; the head is PEFT's SEQ_CLS modules_to_save copy.
MINI = "all-minilm-l6-v2"
ROWS = [
    Row(SMOL, "attention", r=4),
    Row(SMOL, "attention", r=8),
    Row(SMOL, "attention", r=32),
    Row(SMOL, "all-linear", r=8),
    Row(SMOL, "attention", batch_size=8),
    Row(SMOL, "attention", seq_len=512),
    Row(SMOL, "all-linear", batch_size=8),
    Row(SMOL, "all-linear", seq_len=512, grad_checkpointing=True),
    Row(SMOL, "attention", batch_size=8, seq_len=512, grad_checkpointing=True),
    Row(SMOL, "attention", method="dora"),
    Row(SMOL, "all-linear", method="dora"),
    Row(SMOL, "attention", seq_len=512, attn_impl="eager"),
    Row(SMOL, "all-linear", dropout=0.0),
    Row(SMOL, "attention", dtype="bf16"),
    Row(SMOL, "all-linear", method="dora", dtype="bf16"),
    Row(SMOL, "all-linear", batch_size=4, dtype="bf16", autocast=True),
    Row(SMOL, "all-linear", method="dora", dtype="bf16", autocast=True),
    Row(TINY, "attention", r=4),
    Row(TINY, "attention", r=32),
    Row(TINY, "all-linear", r=8),
    Row(TINY, "all-linear", batch_size=8, seq_len=512),
    Row(TINY, "attention", batch_size=8, seq_len=512, grad_checkpointing=True),
    Row(TINY, "all-linear", seq_len=512, method="dora"),
    Row(TINY, "attention", batch_size=8, seq_len=128, dtype="bf16"),
    Row(MINI, "query,value", r=8, batch_size=16, seq_len=64),
    Row(MINI, "query,value", r=4, batch_size=32, seq_len=64),
    Row(MINI, "query,value", r=8, batch_size=16, seq_len=128),
    Row(MINI, "all-linear", r=8, batch_size=16, seq_len=64),
    Row(MINI, "query,value", r=8, batch_size=16, seq_len=64, grad_checkpointing=True),
    Row(MINI, "query,value", r=8, method="dora", batch_size=16, seq_len=64),
    Row(MINI, "query,value", r=8, batch_size=16, seq_len=64, dtype="bf16", autocast=True),
    Row(MINI, "all-linear", r=8, batch_size=16, seq_len=64, dtype="bf16", autocast=True),
]
QUICK = [ROWS[1], ROWS[9], ROWS[17], ROWS[21]]


def build(row: Row) -> tuple[Any, Any]:
    """(model, anatomy) for a row, fresh each time: PEFT wraps the model in place."""
    import torch

    from loratune.anatomy.extract import anatomy_from_model
    from loratune.models import load_anatomy, resolve_source
    from loratune.models.weights import load_model

    if row.model == MINI:
        from loratune.models.classifier import load_classifier

        model, _ = load_classifier(resolve_source(MINI), ("a", "b"), dtype=row.dtype)
        anatomy = anatomy_from_model(model, source=MINI)
    elif row.model == SMOL:
        source = resolve_source(SMOL)
        model, _ = load_model(source, dtype=row.dtype)
        anatomy = load_anatomy(source)
    else:
        from transformers import GPT2Config, GPT2LMHeadModel

        torch.manual_seed(0)
        cfg = GPT2Config(n_embd=64, n_layer=2, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        model = GPT2LMHeadModel(cfg).to(torch.bfloat16 if row.dtype == "bf16" else torch.float32)
        anatomy = anatomy_from_model(model, source=TINY)
    if row.attn_impl != "sdpa":
        model.set_attn_implementation(row.attn_impl)
    return model, anatomy


def run_row(row: Row) -> dict[str, Any]:
    from loratune.anatomy.targets import TargetSpec, parse_targets
    from loratune.budget import AdapterSpec
    from loratune.budget.memory import MemorySettings, estimate_memory
    from loratune.measure import measure_training_peak

    model, anatomy = build(row)
    spec = AdapterSpec(
        targets=TargetSpec(target_modules=parse_targets(row.targets)),
        r=row.r,
        alpha=2 * row.r,
        method=row.method,
        dropout=row.dropout,
    )
    settings = MemorySettings(
        batch_size=row.batch_size,
        seq_len=row.seq_len,
        dtype=row.dtype,
        grad_checkpointing=row.grad_checkpointing,
        device="cpu",
        attn_impl=row.attn_impl,
        autocast=row.autocast,
    )
    est = estimate_memory(anatomy, spec, settings)
    measured = measure_training_peak(model, spec, settings, steps=1, warmup=True)
    return {
        **row.__dict__,
        "estimate_bytes": est.total_bytes,
        "measured_bytes": measured.peak_bytes,
        "rel_error": round((est.total_bytes - measured.peak_bytes) / measured.peak_bytes, 4),
        "peak_phase": est.peak_phase,
        "step_seconds": round(measured.seconds, 2),
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = "| model | targets | r | method | dtype | batch × seq | ckpt | attn | estimate MiB | measured MiB | error |"
    lines = [head, "|" + "---|" * 11]
    for x in rows:
        method = x["method"] + ("" if x["dropout"] else " p=0")
        dtype = x["dtype"] + (" autocast" if x["autocast"] else "")
        ckpt = "on" if x["grad_checkpointing"] else "off"
        lines.append(
            f"| {x['model']} | {x['targets']} | {x['r']} | {method} | {dtype} | {x['batch_size']} × {x['seq_len']} "
            f"| {ckpt} | {x['attn_impl']} | {x['estimate_bytes'] / 2**20:,.1f} | {x['measured_bytes'] / 2**20:,.1f} "
            f"| {100 * x['rel_error']:+.2f} % |"
        )
    return "\n".join(lines)


def main() -> None:
    import torch

    from loratune.paths import write_atomic

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--device", default="cpu")
    if pre.parse_known_args()[0].device != "cpu":  # the CUDA rows live in their own file (issue #12)
        import sys

        import memory_accuracy_cuda

        memory_accuracy_cuda.main(sys.argv[1:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu (these rows) or cuda: bench/memory_accuracy_cuda.py")
    ap.add_argument("--quick", action="store_true", help="4 rows only")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--table", action="store_true", help="print the README table from --out, run nothing")
    ap.add_argument(
        "--models",
        default=None,
        help="comma list: run only these models' rows and merge them into --out (the other rows are kept)",
    )
    args = ap.parse_args()
    if args.table:
        print(table(json.loads(args.out.read_text())["rows"]))
        return
    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    only = set(args.models.split(",")) if args.models else None
    todo = [r for r in ROWS if only is None or r.model in only]
    for row in QUICK if args.quick else todo:
        rows.append(run_row(row))
        x = rows[-1]
        print(
            f"{x['model']:>13} {x['targets']:>10} r={x['r']:<2} {x['method']:<4} {x['dtype']} "
            f"{x['batch_size']}×{x['seq_len']:<4} ckpt={x['grad_checkpointing']!s:<5} {x['attn_impl']:<5} "
            f"est {x['estimate_bytes']:>13,} meas {x['measured_bytes']:>13,} err {100 * x['rel_error']:+.2f} %",
            flush=True,
        )
    merged: dict[str, Any] = {}
    if only is not None and args.out.is_file():  # merge: keep the rows of the models not re-run, in ROWS order
        previous = json.loads(args.out.read_text())
        kept = [x for x in previous["rows"] if x["model"] not in only]
        merged = {
            "seconds": previous.get("seconds"),
            "merged": f"rows of {', '.join(sorted(only))} re-run with --models "
            f"({round(time.perf_counter() - t0, 1)} s) and merged into the earlier run's",
        }
        order = {m: i for i, m in enumerate(dict.fromkeys(r.model for r in ROWS))}
        rows = sorted(kept + rows, key=lambda x: order.get(x["model"], len(order)))
    result = {
        "device": f"cpu ({platform.processor() or platform.machine()}), torch {torch.__version__}",
        "method": "PeakMemory live tensor storage; 1 measured step after an 8-token warm-up step",
        "cuda": "unmeasured (no CUDA machine in this session)",
        "max_abs_rel_error": max(abs(x["rel_error"]) for x in rows),
        "seconds": round(time.perf_counter() - t0, 1),
        "rows": rows,
        **merged,
    }
    write_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print()
    print(table(rows))
    print(f"\nmax |rel_error| = {100 * result['max_abs_rel_error']:.2f} % over {len(rows)} rows; {result['seconds']} s")


if __name__ == "__main__":
    main()
