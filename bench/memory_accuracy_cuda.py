"""Memory estimate vs measured peak on CUDA (issue #12, item 3): ``bench/memory_accuracy.py --device cuda``.

Each row builds a catalog architecture with **random weights** directly on the GPU (the shape is what
memory depends on, not the values), quantizes it in place when the row says so (bitsandbytes NF4 /
LLM.int8, the layers transformers' BitsAndBytesConfig builds), wraps it with PEFT exactly as a trial
does and runs 2 real training steps (forward, backward, AdamW) on random tokens. Measured:
``torch.cuda.max_memory_allocated`` (and ``max_memory_reserved``) over the steps, against
``budget.memory``'s estimate without its context/slack term (``rel_error``, same row schema as the CPU
file); the context term itself is measured once (memory in use after ``torch.cuda.init()`` and a first
matmul, minus the allocator's pool) and the allocator slack per row (reserved − allocated).

    python bench/memory_accuracy.py --device cuda          # → bench/results/memory_accuracy_cuda.json
    python bench/memory_accuracy.py --device cuda --dry-run # the same code path on the CPU, tiny shapes
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gpu_common as gc_

SMOL, QWEN, LLAMA = "smollm2-135m", "qwen2.5-0.5b", "llama-3.1-8b"


@dataclass(frozen=True)
class CudaRow:
    model: str
    targets: str
    r: int = 8
    method: str = "lora"
    batch_size: int = 1
    seq_len: int = 512
    grad_checkpointing: bool = False
    dtype: str = "bf16"
    attn_impl: str = "sdpa"
    dropout: float = 0.05
    autocast: bool = False
    quant: str = "none"


ROWS = [
    CudaRow(SMOL, "attention", r=8, batch_size=1, seq_len=512),
    CudaRow(SMOL, "all-linear", r=16, batch_size=4, seq_len=512),
    CudaRow(SMOL, "attention", batch_size=8, seq_len=2048),
    CudaRow(SMOL, "all-linear", batch_size=8, seq_len=2048, grad_checkpointing=True),
    CudaRow(SMOL, "attention", batch_size=4, seq_len=512, quant="4bit"),
    CudaRow(SMOL, "attention", batch_size=4, seq_len=512, quant="8bit"),
    CudaRow(SMOL, "all-linear", method="dora", batch_size=2, seq_len=512),
    CudaRow(SMOL, "attention", batch_size=2, seq_len=1024, attn_impl="eager"),
    CudaRow(QWEN, "all-linear", batch_size=4, seq_len=1024),
    CudaRow(QWEN, "attention", batch_size=8, seq_len=2048, grad_checkpointing=True, quant="4bit"),
    CudaRow(LLAMA, "attention", batch_size=1, seq_len=2048, grad_checkpointing=True),
    CudaRow(LLAMA, "all-linear", batch_size=4, seq_len=2048, grad_checkpointing=True),
    CudaRow(LLAMA, "all-linear", r=16, batch_size=8, seq_len=2048, grad_checkpointing=True, quant="4bit"),
    CudaRow(LLAMA, "attention", batch_size=2, seq_len=1024, grad_checkpointing=True, quant="8bit"),
]


def run_row(row: CudaRow, device: str, dry_run: bool) -> dict[str, Any]:
    from loratune.anatomy.targets import TargetSpec, parse_targets
    from loratune.budget import AdapterSpec
    from loratune.budget.memory import MemorySettings, estimate_memory
    from loratune.measure import measure_training_peak
    from loratune.measure.preflight import random_model
    from loratune.models.quantized import quantize_in_memory
    from loratune.models.skeleton import anatomy_from_config

    cfg = gc_.catalog_config(row.model, dry_run=dry_run)
    batch, seq = gc_.shrink(row.batch_size, row.seq_len, dry_run)
    anatomy = anatomy_from_config(cfg, source=row.model)
    spec = AdapterSpec(
        targets=TargetSpec(target_modules=parse_targets(row.targets)),
        r=row.r,
        alpha=2 * row.r,
        method=row.method,
        dropout=row.dropout,
    )
    kind = "cuda" if device.startswith("cuda") else "cpu"
    settings = MemorySettings(
        batch_size=batch,
        seq_len=seq,
        dtype=row.dtype,
        quant=row.quant,
        grad_checkpointing=row.grad_checkpointing,
        device=kind,
        attn_impl=row.attn_impl,
        autocast=row.autocast,
    )
    est = estimate_memory(anatomy, spec, settings)
    t0 = time.perf_counter()
    model = random_model(cfg, dtype=row.dtype, device=device, attn_impl=row.attn_impl)
    if row.quant != "none":
        model = quantize_in_memory(model, row.quant, compute_dtype=row.dtype, device=device)
    build_seconds = time.perf_counter() - t0
    measured = measure_training_peak(model, spec, settings, steps=2, device=device)
    allocated_estimate = est.total_bytes - est.overhead_bytes
    out = {
        **asdict(row),
        "batch_size": batch,
        "seq_len": seq,
        "weights": "random",
        "estimate_bytes": allocated_estimate,
        "estimate_total_bytes": est.total_bytes,
        "estimate_overhead_bytes": est.overhead_bytes,
        "measured_bytes": measured.peak_bytes,
        "measured_reserved_bytes": measured.peak_reserved_bytes,
        "rel_error": round((allocated_estimate - measured.peak_bytes) / measured.peak_bytes, 4),
        "peak_phase": est.peak_phase,
        "build_seconds": round(build_seconds, 2),
        "step_seconds": round(measured.seconds / measured.steps, 3),
    }
    if measured.peak_reserved_bytes:
        out["allocator_slack"] = round(measured.peak_reserved_bytes / measured.peak_bytes - 1, 4)
    del model
    gc_.free_cuda()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes, output under bench/work/")
    ap.add_argument("--quick", action="store_true", help="every 3rd row")
    ap.add_argument("--budget-seconds", type=float, default=None, help="skip the rows left after this")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    dry = gc_.dry_run_requested(args.dry_run)
    device = gc_.pick_device(args.device, dry)
    started = time.perf_counter()
    context = gc_.cuda_context(device)  # first: before anything else takes GPU memory
    deadline = gc_.Deadline(args.budget_seconds)
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    out = gc_.out_path("memory_accuracy_cuda.json", dry, args.out)

    def result() -> dict[str, Any]:
        slack = [x["allocator_slack"] for x in rows if "allocator_slack" in x]
        return {
            "device": device,
            "dry_run": dry,
            "weights": "random weights (catalog configs): memory depends on shapes, not values",
            "method": "torch.cuda.max_memory_allocated over 2 real PEFT training steps (AdamW), random tokens; "
            "estimate without its CUDA context/slack term",
            "machine": gc_.machine(device),
            "cuda_context": context,
            "allocator_slack_measured": {"max": max(slack), "mean": sum(slack) / len(slack)} if slack else None,
            "max_abs_rel_error": max((abs(x["rel_error"]) for x in rows), default=None),
            "seconds": round(time.perf_counter() - started, 1),
            "rows": rows,
            "skipped": skipped,
        }

    for row in ROWS[::3] if args.quick else ROWS:
        if deadline.passed():
            skipped.append({**asdict(row), "skipped": "time budget"})
            continue
        try:
            x = run_row(row, device, dry)
        except Exception as e:  # one failing row (an OOM, a kernel missing) must not lose the others
            skipped.append({**asdict(row), "error": f"{type(e).__name__}: {e}"[:400]})
            print(f"row failed: {row}: {type(e).__name__}: {str(e)[:200]}", flush=True)
            gc_.free_cuda()
            continue
        rows.append(x)
        print(
            f"{x['model']:>13} {x['targets']:>10} r={x['r']:<2} {x['method']:<4} {x['quant']:>4} "
            f"{x['batch_size']}x{x['seq_len']:<4} ckpt={x['grad_checkpointing']!s:<5} {x['attn_impl']:<5} "
            f"est {x['estimate_bytes']:>14,} meas {x['measured_bytes']:>14,} err {100 * x['rel_error']:+.2f} %",
            flush=True,
        )
        gc_.write_json(out, result(), quiet=True)  # after every row: a run cut short keeps what it measured
    final = result()
    gc_.write_json(out, final)
    if rows:
        print(f"max |rel_error| = {100 * final['max_abs_rel_error']:.2f} % over {len(rows)} rows")


if __name__ == "__main__":
    main()
