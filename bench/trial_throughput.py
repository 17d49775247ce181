"""How fast is a loratune trial against PEFT + transformers' ``Trainer`` with default settings? (issue 5, part 5)

One run, one process, the same machine state for all arms, on SmolLM2-135M-Instruct:
  (a) PEFT + ``Trainer`` with its defaults (fp32, random batches padded by ``DataCollatorForSeq2Seq``,
      full ``[batch, seq, vocab]`` logits, fused AdamW, cosine schedule);
  (b) loratune's trial loop as a user gets it by default on this machine (``--dtype auto``: a bf16 frozen
      base with fp32 LoRA weights under autocast where the CPU runs bf16 natively, else fp32;
      length-grouped batches, logits only at label positions, eager attention for short rows): the
      headline ``speedup``; the CPU's bf16 capability is recorded (``cpu_native_bf16``);
  (c) loratune's loop in the other dtype (bf16 ↔ fp32), a second row: ``speedup_bf16`` and the bf16
      effect on the loss, separated from everything else;
  (d) the ceiling: forward + backward of the frozen base alone (no LoRA, dropout or optimizer) over
      the same batches and kernels, eager: no LoRA loop can reach a higher roofline fraction;
  (e) the same compiled with torch.compile per decoder layer (compile time reported, not counted):
      what fusing the element-wise work into the matmul-bound kernels would buy.
Same LoRA config, data (demo QA, chat template, prompt masked), batch size, steps, schedule and seed;
both use the same number of threads. Tokens are real (non-padding) tokens of the batches trained on.

Also measured here: the bf16 and fp32 matmul peak (best of square GEMMs) and loratune's achieved
FLOP/s. Step FLOPs, per micro-batch of T real tokens, L label tokens and rows of length s:
  frozen linears 4·N·T (forward 2N, backward activation gradients only 2N: EVIDENCE.md; PaLM 2204.02311 app. B)
  + LoRA weights 6·N_lora·T (forward, activation and weight gradients: Kaplan et al. 2001.08361)
  + LM head 4·d·V·L (only the positions the loss needs; frozen, so no weight gradient)
  + attention 12·n_layer·d_attn·s² per row (PaLM 2204.02311 appendix B: 6·2·L·H·Q·T per token).
The same formula is applied to the Trainer's tokens (its extra padded positions and full-vocab logits
are waste, not useful work), so the two FLOP/s figures compare like with like.

    .venv/bin/python bench/trial_throughput.py            # ~4 min on 2 idle cores
    .venv/bin/python bench/trial_throughput.py --steps 3  # smoke run (results not written)

Writes bench/results/trial_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from loratune.data import IGNORE_INDEX
from loratune.paths import write_atomic

RESULTS = Path(__file__).parent / "results" / "trial_throughput.json"
MODEL = "smollm2-135m"


def matmul_peak(dtype: Any, sizes: tuple[int, ...] = (1024, 2048), reps: int = 5) -> float:
    """Best FLOP/s of an n×n @ n×n matmul (2n³ FLOPs) over a few sizes and repeats."""
    import torch

    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b  # warm-up: oneDNN builds its kernel once per shape
        for _ in range(reps):
            t = time.perf_counter()
            a @ b
            best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


def shape_rate(dtype: Any, m: int, k: int, n: int, reps: int = 10) -> float:
    """FLOP/s of the model's own largest GEMM shape (tokens × hidden @ hidden × intermediate)."""
    import torch

    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    a @ b
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * m * k * n / min(times)


def useful_flops(examples: list[Any], cfg: Any, n_linear: int, n_lora: int) -> float:
    """FLOPs one pass of training over ``examples`` needs (formula in the module docstring)."""
    d, vocab, layers = cfg.hidden_size, cfg.vocab_size, cfg.num_hidden_layers
    d_attn = cfg.num_attention_heads * getattr(cfg, "head_dim", d // cfg.num_attention_heads)
    total = 0.0
    for ex in examples:
        s = len(ex.input_ids)
        labels = sum(1 for lab in ex.labels[1:] if lab != IGNORE_INDEX)
        total += 4 * n_linear * s + 6 * n_lora * s + 4 * d * vocab * labels + 12 * layers * d_attn * s * s
    return total


def load_data(tokenizer: Any, n_train: int, n_val: int, max_length: int) -> tuple[list[Any], list[Any]]:
    from loratune.data import demo_qa_path, load_examples, tokenize_examples

    examples = load_examples(demo_qa_path())[: n_train + n_val]
    tokenized = tokenize_examples(examples, tokenizer, max_length=max_length).examples
    return tokenized[:n_train], tokenized[n_train:]


def run_trainer(source: Any, spec: Any, args: argparse.Namespace, train: list[Any], val: list[Any]) -> dict[str, Any]:
    """(a) PEFT + transformers Trainer, default settings apart from what must match."""
    import datasets
    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from loratune.anatomy.extract import anatomy_from_model
    from loratune.models.weights import load_model
    from loratune.trial.evaluate import mean_loss
    from loratune.trial.peft_model import build_peft_model

    model, tok = load_model(source, dtype="fp32")
    torch.manual_seed(args.seed)
    # The same PEFT LoraConfig the trial builds; PEFT's own forward and Trainer's loop train it.
    peft_model, _ = build_peft_model(model, anatomy_from_model(model, source=MODEL), spec, args.steps, None)
    ds = datasets.Dataset.from_list([{"input_ids": e.input_ids, "labels": e.labels} for e in train])
    pad = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=IGNORE_INDEX)
    seen = {"tokens": 0, "positions": 0, "batches": 0}

    def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = pad(features)
        seen["tokens"] += int(batch["attention_mask"].sum())
        seen["positions"] += int(batch["attention_mask"].numel())
        seen["batches"] += 1
        return batch

    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=args.batch_size,
            max_steps=args.steps,
            learning_rate=args.lr,
            lr_scheduler_type="cosine",
            warmup_steps=args.warmup,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            seed=args.seed,
            use_cpu=True,
            disable_tqdm=True,
        )
        trainer = Trainer(model=peft_model, args=targs, train_dataset=ds, data_collator=collate)
        t0 = time.perf_counter()
        metrics = trainer.train().metrics
        wall = time.perf_counter() - t0
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    val_loss = mean_loss(peft_model, val, pad_id=tok.pad_token_id, batch_size=args.batch_size)
    n_lora = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    return {
        "tokens": seen["tokens"],
        "padding_fraction": round(1 - seen["tokens"] / seen["positions"], 4),
        "batches": seen["batches"],
        "train_seconds": round(metrics["train_runtime"], 3),
        "wall_seconds": round(wall, 3),
        "tokens_per_second": seen["tokens"] / metrics["train_runtime"],
        "train_loss_curve": [round(x, 4) for x in losses],
        "train_loss_last5": statistics.mean(losses[-5:]),
        "val_loss_after": val_loss,
        "trainable_params": n_lora,
        "threads": torch.get_num_threads(),
    }


def run_loratune(
    runner: Any, spec: Any, args: argparse.Namespace, dtype: str, train: list[Any], val: list[Any]
) -> dict[str, Any]:
    from loratune.trial import TrainSettings

    settings = TrainSettings(
        learning_rate=args.lr,
        batch_size=args.batch_size,
        max_steps=args.steps,
        warmup_ratio=args.warmup,
        scheduler="cosine",
        max_length=args.max_length,
        seed=args.seed,
        compute_dtype=dtype,
    )
    res = runner.run(spec, settings, train, val, progress=False)
    losses = [v for _, v in res.loss_curve]
    return {
        "status": res.status,
        "tokens": res.train_tokens,
        "padding_fraction": res.extra["padding_fraction"],
        "train_seconds": res.extra["train_seconds"],
        "wall_seconds": round(res.wall_seconds, 3),
        "tokens_per_second": res.tokens_per_second,
        "train_loss_curve": [round(x, 4) for x in losses],
        "train_loss_last5": statistics.mean(losses[-5:]),
        "val_loss_before": res.val_loss_before,
        "val_loss_after": res.val_loss_after,
        "trainable_params": res.trainable_params,
        "peak_memory_bytes": res.peak_memory_bytes,
        "threads": res.extra["threads"],
        "attention": res.extra["attention"],
        "compute_dtype": dtype,
    }


def run_frozen_base(runner: Any, args: argparse.Namespace, train: list[Any], compiled: bool) -> dict[str, Any]:
    """(d)/(e) The ceiling: forward + backward of the frozen base alone over the same batches.

    No LoRA, no dropout, no optimizer: activation gradients flow from the loss (logits at label
    positions, as in the trial) to the input embeddings, which is exactly the frozen-linear,
    LM-head and attention work the FLOP formula counts. A LoRA trial does all of this and more, so
    its roofline fraction cannot exceed this one's on the same kernels. ``compiled`` runs each
    decoder layer through torch.compile (inductor); the compile time is reported, not counted.
    """
    import torch

    from loratune.trial import TrainSettings
    from loratune.trial.fused_norm import fused_rms_norm
    from loratune.trial.loop import micro_batches
    from loratune.trial.loss import split_decoder_head
    from loratune.trial.speed import autocast, choose_attention, use_attention

    model = runner.model_for("bf16")  # the ceiling is the bf16 base's, whatever the default arm ran in
    decoder, head = split_decoder_head(model)
    settings = TrainSettings(batch_size=args.batch_size, max_length=args.max_length, seed=args.seed)
    stream = micro_batches(train, settings, runner.tokenizer.pad_token_id)
    batches = [next(stream) for _ in range(args.steps)]
    layers = list(decoder.layers)

    def step(b: Any) -> None:
        with autocast("bf16", "cpu"):
            embeds = decoder.embed_tokens(b.input_ids).detach().requires_grad_(True)
            hidden = decoder(inputs_embeds=embeds, attention_mask=b.attention_mask, use_cache=False).last_hidden_state
            keep = b.labels[:, 1:] != IGNORE_INDEX
            logits = head(hidden[:, :-1][keep])
            loss = torch.nn.functional.cross_entropy(logits.float(), b.labels[:, 1:][keep], reduction="sum")
        loss.backward()

    longest = max(b.input_ids.shape[1] for b in batches)
    compile_seconds = None
    with use_attention(model, choose_attention(longest, "cpu")), fused_rms_norm(model):
        try:
            if compiled:
                for layer in layers:
                    layer.compile(dynamic=True)
                t0 = time.perf_counter()
                for b in batches[:2]:  # compiles once for all 30 identical layers (dynamic sequence length)
                    step(b)
                compile_seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            for b in batches:
                step(b)
            seconds = time.perf_counter() - t0
        finally:
            if compiled:
                import torch._dynamo

                for layer in layers:
                    layer._compiled_call_impl = None  # back to eager for anything after
                torch._dynamo.reset()
    return {
        "compiled": compiled,
        "tokens": sum(b.tokens for b in batches),
        "train_seconds": round(seconds, 3),
        "tokens_per_second": sum(b.tokens for b in batches) / seconds,
        "compile_seconds": None if compile_seconds is None else round(compile_seconds, 1),
    }


def main() -> None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--device", default="cpu")
    if pre.parse_known_args()[0].device != "cpu":  # the CUDA arms live in their own file (issue #12)
        import sys

        import trial_throughput_cuda

        trial_throughput_cuda.main(sys.argv[1:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu (these arms) or cuda: bench/trial_throughput_cuda.py")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=float, default=0.1)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None, help="Both arms (default: every usable CPU).")
    ap.add_argument("--no-fp32", action="store_true", help="Skip arm (c), loratune in the non-default dtype.")
    ap.add_argument("--no-ceiling", action="store_true", help="Skip arms (d, e), the frozen base alone.")
    ap.add_argument("--force", action="store_true", help="Write the results even if the machine was busy.")
    args = ap.parse_args()
    started = time.perf_counter()

    import torch

    from loratune.anatomy.targets import TargetSpec
    from loratune.budget import AdapterSpec
    from loratune.models import resolve_source
    from loratune.trial import TrialRunner
    from loratune.trial.speed import usable_cpus

    threads = args.threads or usable_cpus()
    os.environ["LORATUNE_THREADS"] = str(threads)  # same thread count for every arm: compare loops, not luck
    torch.set_num_threads(threads)
    load = {"start": os.getloadavg()[0]}
    peaks = {"bf16": matmul_peak(torch.bfloat16), "fp32": matmul_peak(torch.float32)}

    source = resolve_source(MODEL)
    from loratune.trial.precision import cpu_has_fast_bf16, resolve_compute_dtype

    default_dtype = resolve_compute_dtype("auto", "cpu")  # what `loratune train` runs here without --dtype
    other_dtype = "fp32" if default_dtype == "bf16" else "bf16"
    runner = TrialRunner(source, compute_dtype=default_dtype)
    cfg = runner.model.config
    train, val = load_data(runner.tokenizer, args.steps * args.batch_size, args.val, args.max_length)
    # Seed preset "simple QA": r 8, alpha 16, attention projections, dropout 0.05.
    spec = AdapterSpec(TargetSpec(("attention",)), r=8, alpha=16, dropout=0.05)
    n_linear = sum(
        p.numel() for n, p in runner.model.named_parameters() if ".layers." in n and p.dim() == 2
    )  # q, k, v, o, gate, up, down of every block

    trainer = run_trainer(source, spec, args, train, val)
    load["after_trainer"] = os.getloadavg()[0]
    ours = run_loratune(runner, spec, args, default_dtype, train, val)
    load["after_loratune"] = os.getloadavg()[0]
    other = None if args.no_fp32 else run_loratune(runner, spec, args, other_dtype, train, val)
    bf16 = ours if default_dtype == "bf16" else other
    fp32 = ours if default_dtype == "fp32" else other
    ceiling = {}
    if not args.no_ceiling:
        ceiling["frozen_base_eager"] = run_frozen_base(runner, args, train, compiled=False)
        try:
            ceiling["frozen_base_compiled"] = run_frozen_base(runner, args, train, compiled=True)
        except Exception as e:  # no C++ compiler, or an inductor limitation on this machine
            ceiling["frozen_base_compiled"] = {"error": f"{type(e).__name__}: {e}"[:300]}
    load["end"] = os.getloadavg()[0]

    # One epoch over exactly these examples in both arms (steps × batch size = len(train)).
    flops = useful_flops(train, cfg, n_linear, ours["trainable_params"])
    ours["achieved_flops_per_second"] = flops / ours["train_seconds"]
    trainer["achieved_flops_per_second"] = flops / trainer["train_seconds"]
    gemm = shape_rate(torch.bfloat16, 560, cfg.hidden_size, cfg.intermediate_size)
    base_flops = useful_flops(train, cfg, n_linear, 0)
    for arm in ceiling.values():
        if "train_seconds" in arm:
            arm["roofline_fraction"] = base_flops / arm["train_seconds"] / peaks["bf16"]
    result = {
        "speedup": ours["tokens_per_second"] / trainer["tokens_per_second"],
        "roofline_fraction": ours["achieved_flops_per_second"] / peaks[default_dtype],
        "default_dtype": default_dtype,
        "cpu_native_bf16": cpu_has_fast_bf16(),
        "speedup_bf16": None if bf16 is None else bf16["tokens_per_second"] / trainer["tokens_per_second"],
        "loss_rel_gap": abs(ours["val_loss_after"] - trainer["val_loss_after"]) / trainer["val_loss_after"],
        "targets": {"speedup": ">= 2.5", "roofline_fraction": ">= 0.6", "loss_rel_gap": "<= 0.02"},
        "loss_definition": "validation loss (mean token cross-entropy on 64 held-out demo QA answers) after training",
        "bf16_vs_fp32_loss_rel_gap": None
        if fp32 is None or bf16 is None
        else abs(bf16["val_loss_after"] - fp32["val_loss_after"]) / fp32["val_loss_after"],
        "train_loss_last5_rel_gap": abs(ours["train_loss_last5"] - trainer["train_loss_last5"])
        / trainer["train_loss_last5"],
        "trainer_roofline_fraction_fp32": trainer["achieved_flops_per_second"] / peaks["fp32"],
        "roofline_fraction_of_model_gemm": ours["achieved_flops_per_second"] / gemm,
        "matmul_peak_flops": peaks,
        "model_gemm_flops_bf16": gemm,
        "useful_flops_per_run": flops,
        "ceiling": ceiling or None,
        "trainer": trainer,
        "loratune": ours,
        "loratune_fp32": fp32,
        "loratune_bf16": bf16,
        "config": {
            "model": MODEL,
            "adapter": {"r": 8, "alpha": 16, "dropout": 0.05, "targets": "q_proj,k_proj,v_proj,o_proj"},
            "steps": args.steps,
            "batch_size": args.batch_size,
            "learning_rate": args.lr,
            "warmup_ratio": args.warmup,
            "scheduler": "cosine",
            "max_length": args.max_length,
            "train_examples": len(train),
            "val_examples": len(val),
            "seed": args.seed,
        },
        "machine": {
            "cpu": _cpu_name(),
            "threads": threads,
            "usable_cpus": usable_cpus(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "load_average_1min": load,
        },
        "bench_seconds": round(time.perf_counter() - started, 1),
    }
    # The 1-minute load average counts our own `threads` busy threads; more means another process
    # shared the CPUs. Fixed-thread runs then slow down, loratune's many short bf16 ops far more than
    # the Trainer's large fp32 ones (each parallel region waits for a descheduled thread): measured
    # speedup 3.48× with nothing else running, 1.61× with ~0.5 CPU taken, 0.43× with ~1.5 taken.
    busy = max(load.values()) - threads
    result["machine"]["contended"] = busy > 0.3
    text = json.dumps(result, indent=2) + "\n"
    written = False
    if result["machine"]["contended"] and not args.force:
        print(f"warning: other processes used ~{busy:.1f} CPUs during the run; results not written (rerun, or --force)")
    elif args.steps >= 20:
        write_atomic(RESULTS, text)
        written = True
    print(
        f"speedup {result['speedup']:.2f}x  roofline {result['roofline_fraction']:.2f}  "
        f"loss gap {result['loss_rel_gap']:.4f}  ({result['bench_seconds']:.0f} s)"
    )
    for name, arm in ceiling.items():
        print(f"ceiling {name}: roofline {arm.get('roofline_fraction', float('nan')):.2f}  {arm}")
    if args.steps < 20:
        print(text)
    elif written:
        print(f"wrote {RESULTS}")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
