"""loratune's trial loop vs PEFT + transformers' ``Trainer`` on CUDA (issue #12, item 4):
``bench/trial_throughput.py --device cuda``.

Two shapes from the catalog with **random weights** (no weights travel to a GPU machine; speed and
memory depend on the shapes): SmolLM2-135M and Llama-3.1-8B. Data: synthetic QA rows (random prompt
tokens, the answer a copy of the prompt's first 8 tokens, prompt masked), so no tokenizer is needed and
the LoRA has something to learn. Same LoRA config, data, steps, schedule and seed in every arm:

  trainer         PEFT + Trainer, bf16 base, ``TrainingArguments(bf16=True)``, its own padding collator
  loratune        loratune's trial loop (bf16 base, length grouping, label-position logits, SDPA; the
                  CPU-only paths are off on CUDA: trial/device.py SPEED_PATHS)
  trainer_qlora   (8B) the QLoRA recipe: 4-bit NF4 base, prepare_model_for_kbit_training, gradient
                  checkpointing, Trainer bf16
  loratune_qlora  (8B) loratune with the same 4-bit base and checkpointing

Per arm: real (non-padding) tokens/s, ``max_memory_allocated``, validation loss after training. Per
model: ``speedup`` (loratune / trainer tokens/s), ``loss_rel_gap`` (|Δ val loss| / trainer's) and
``mfu`` (loratune's useful FLOP/s — the formula of bench/trial_throughput.py — over the bf16 matmul rate
measured on this GPU in the same run). Writes bench/results/trial_throughput_cuda.json.

    python bench/trial_throughput.py --device cuda
    python bench/trial_throughput.py --device cuda --dry-run   # CPU, tiny shapes, bench/work/
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import gpu_common as gc_

from loratune.data import IGNORE_INDEX, TokenizedExample

SMOL, LLAMA = "smollm2-135m", "llama-3.1-8b"
# (model, steps, batch size, max length, QLoRA arms)
PLAN = [(SMOL, 30, 8, 256, False), (LLAMA, 10, 4, 512, True)]


class StubTokenizer:
    """What the trial loop reads from a tokenizer (the data is already token ids)."""

    pad_token_id = 0
    eos_token_id = 1
    pad_token = "<pad>"
    eos_token = "</s>"


def synthetic_qa(n: int, vocab: int, max_length: int, seed: int) -> list[TokenizedExample]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        prompt = [rng.randrange(2, vocab) for _ in range(rng.randint(max_length // 4, max_length - 10))]
        answer = prompt[:8] + [1]
        rows.append(TokenizedExample(prompt + answer, [IGNORE_INDEX] * len(prompt) + answer))
    return rows


def bf16_matmul_rate(device: str, n: int = 8192, reps: int = 10) -> float:
    """Best bf16 n×n @ n×n rate (2n³ FLOP) on this device, timed with CUDA events (CPU: perf_counter)."""
    import torch

    if not device.startswith("cuda"):
        import trial_throughput

        return trial_throughput.matmul_peak(torch.bfloat16, sizes=(256,), reps=3)
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / 1000)
    del a, b
    return 2 * n**3 / best


def _reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: str) -> int | None:
    import torch

    return int(torch.cuda.max_memory_allocated(device)) if device.startswith("cuda") else None


def run_loratune(
    model: Any, spec: Any, args: Any, train: list[Any], val: list[Any], device: str, *, ckpt: bool = False
) -> dict[str, Any]:
    from loratune.trial import TrainSettings, TrialRunner

    runner = TrialRunner((model, StubTokenizer()), compute_dtype="bf16", device=device)
    settings = TrainSettings(
        learning_rate=args.lr,
        batch_size=args.batch_size,
        max_steps=args.steps,
        warmup_ratio=0.1,
        scheduler="cosine",
        max_length=args.max_length,
        seed=args.seed,
        compute_dtype="bf16",
        grad_checkpointing=ckpt,
    )
    _reset_peak(device)
    res = runner.run(spec, settings, train, val, progress=False, measure_memory=not device.startswith("cuda"))
    losses = [v for _, v in res.loss_curve]
    return {
        "status": res.status,
        "tokens": res.train_tokens,
        "train_seconds": res.extra["train_seconds"],
        "tokens_per_second": res.tokens_per_second,
        "peak_memory_bytes": _peak(device) or res.peak_memory_bytes,
        "train_loss_last5": statistics.mean(losses[-5:]) if losses else None,
        "val_loss_before": res.val_loss_before,
        "val_loss_after": res.val_loss_after,
        "trainable_params": res.trainable_params,
        "attention": res.extra.get("attention"),
        "speed_paths": res.extra.get("speed_paths"),
        "grad_checkpointing": ckpt,
    }


def run_trainer(
    model: Any, spec: Any, args: Any, train: list[Any], val: list[Any], device: str, *, ckpt: bool = False
) -> dict[str, Any]:
    """PEFT + Trainer over ``model`` (left without its adapter afterwards)."""
    import torch
    from transformers import Trainer, TrainingArguments

    from loratune.anatomy.extract import anatomy_from_model
    from loratune.trial.evaluate import mean_loss
    from loratune.trial.peft_model import build_peft_model

    torch.manual_seed(args.seed)
    peft_model, _ = build_peft_model(model, anatomy_from_model(model, source="bench"), spec, args.steps, None)
    # A plain list is a map-style dataset to Trainer (the `datasets` package is not on the GPU image).
    ds = [{"input_ids": list(e.input_ids), "labels": list(e.labels)} for e in train]
    seen = {"tokens": 0, "positions": 0}

    def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
        n = max(len(f["input_ids"]) for f in features)
        ids = torch.zeros(len(features), n, dtype=torch.long)
        labels = torch.full((len(features), n), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros(len(features), n, dtype=torch.long)
        for i, f in enumerate(features):
            k = len(f["input_ids"])
            ids[i, :k], labels[i, :k], mask[i, :k] = torch.tensor(f["input_ids"]), torch.tensor(f["labels"]), 1
        seen["tokens"] += int(mask.sum())
        seen["positions"] += mask.numel()
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=args.batch_size,
            max_steps=args.steps,
            learning_rate=args.lr,
            lr_scheduler_type="cosine",
            warmup_steps=0.1,  # < 1: a ratio of the steps (transformers 5)
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            seed=args.seed,
            bf16=True,
            use_cpu=not device.startswith("cuda"),
            gradient_checkpointing=ckpt,
            gradient_checkpointing_kwargs={"use_reentrant": False} if ckpt else None,
            disable_tqdm=True,
            remove_unused_columns=False,
        )
        trainer = Trainer(model=peft_model, args=targs, train_dataset=ds, data_collator=collate)  # type: ignore[arg-type]
        _reset_peak(device)
        metrics = trainer.train().metrics
        peak = _peak(device)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    val_loss = mean_loss(peft_model, val, pad_id=0, batch_size=args.batch_size, max_length=args.max_length)
    n_lora = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    if ckpt:
        base = peft_model.get_base_model()
        disable = getattr(base, "activation_checkpointing_disable", None) or base.gradient_checkpointing_disable
        disable()
    peft_model.unload()
    return {
        "tokens": seen["tokens"],
        "padding_fraction": round(1 - seen["tokens"] / max(seen["positions"], 1), 4),
        "train_seconds": round(metrics["train_runtime"], 3),
        "tokens_per_second": seen["tokens"] / metrics["train_runtime"],
        "peak_memory_bytes": peak,
        "train_loss_last5": statistics.mean(losses[-5:]) if losses else None,
        "val_loss_after": val_loss,
        "trainable_params": n_lora,
        "grad_checkpointing": ckpt,
    }


def bench_model(
    name: str, steps: int, batch: int, length: int, qlora: bool, device: str, dry: bool, args: Any
) -> dict[str, Any]:
    import trial_throughput

    from loratune.anatomy.targets import TargetSpec
    from loratune.budget import AdapterSpec
    from loratune.measure.preflight import random_model
    from loratune.models.quantized import quantize_in_memory

    cfg = gc_.catalog_config(name, dry_run=dry)
    if dry:
        steps, batch, length = 3, 2, 32
    run_args = argparse.Namespace(steps=steps, batch_size=batch, max_length=length, lr=args.lr, seed=args.seed)
    train = synthetic_qa(steps * batch, cfg["vocab_size"], length, seed=args.seed)
    val = synthetic_qa(4 * batch, cfg["vocab_size"], length, seed=args.seed + 1)
    spec = AdapterSpec(TargetSpec(("attention",)), r=8, alpha=16, dropout=0.05)
    t0 = time.perf_counter()
    model = random_model(cfg, dtype="bf16", device=device)
    build = time.perf_counter() - t0
    config = model.config
    n_linear = sum(p.numel() for n, p in model.named_parameters() if ".layers." in n and p.dim() == 2)
    arms: dict[str, Any] = {}
    arms["loratune"] = run_loratune(model, spec, run_args, train, val, device)
    gc_.free_cuda()
    arms["trainer"] = run_trainer(model, spec, run_args, train, val, device)
    gc_.free_cuda()
    if qlora:
        model = quantize_in_memory(model, "4bit", compute_dtype="bf16", device=device)
        gc_.free_cuda()
        arms["trainer_qlora"] = run_trainer(model, spec, run_args, train, val, device, ckpt=True)
        gc_.free_cuda()
        arms["loratune_qlora"] = run_loratune(model, spec, run_args, train, val, device, ckpt=True)
    del model
    gc_.free_cuda()
    ours, theirs = arms["loratune"], arms["trainer"]
    flops = trial_throughput.useful_flops(train, config, n_linear, ours["trainable_params"])
    out: dict[str, Any] = {
        "weights": "random weights (catalog config)",
        "speedup": ours["tokens_per_second"] / theirs["tokens_per_second"],
        "loss_rel_gap": abs(ours["val_loss_after"] - theirs["val_loss_after"]) / theirs["val_loss_after"],
        "mfu": flops / ours["train_seconds"] / args.peak if ours["train_seconds"] else None,
        "trainer_mfu": flops / theirs["train_seconds"] / args.peak if theirs["train_seconds"] else None,
        "useful_flops": flops,
        "build_seconds": round(build, 1),
        "config": {"steps": steps, "batch_size": batch, "max_length": length, "adapter": "attention r8 alpha16 p0.05"},
        "arms": arms,
    }
    if qlora:
        q, tq = arms["loratune_qlora"], arms["trainer_qlora"]
        out["qlora_speedup"] = q["tokens_per_second"] / tq["tokens_per_second"]
        out["qlora_loss_rel_gap"] = abs(q["val_loss_after"] - tq["val_loss_after"]) / tq["val_loss_after"]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes, output under bench/work/")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default=None, help="one model of the plan (smollm2-135m or llama-3.1-8b)")
    ap.add_argument("--budget-seconds", type=float, default=None, help="skip the models left after this")
    ap.add_argument("--out", type=Path, default=None)
    args, _unknown = ap.parse_known_args(argv)  # the CPU bench's own flags are ignored here
    dry = gc_.dry_run_requested(args.dry_run)
    device = gc_.pick_device(args.device, dry)
    started = time.perf_counter()
    deadline = gc_.Deadline(args.budget_seconds)
    args.peak = bf16_matmul_rate(device)
    models: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    out = gc_.out_path("trial_throughput_cuda.json", dry, args.out)

    def result() -> dict[str, Any]:
        return {
            "device": device,
            "dry_run": dry,
            "weights": "random weights (catalog configs), synthetic QA tokens",
            "bf16_matmul_flops": args.peak,
            "targets": {"loss_rel_gap": "<= 0.02"},
            "machine": gc_.machine(device),
            "models": models,
            "skipped": skipped,
            "seconds": round(time.perf_counter() - started, 1),
        }

    for name, steps, batch, length, qlora in PLAN:
        if args.only and name != args.only:
            continue
        if deadline.passed():
            skipped[name] = "time budget"
            continue
        try:
            models[name] = bench_model(name, steps, batch, length, qlora, device, dry, args)
        except Exception as e:  # an OOM or a missing kernel on one shape must not lose the other
            skipped[name] = f"{type(e).__name__}: {e}"[:400]
            print(f"{name} failed: {skipped[name]}", flush=True)
            gc_.free_cuda()
            continue
        m = models[name]
        print(
            f"{name}: speedup {m['speedup']:.2f}x  loss gap {m['loss_rel_gap']:.4f}  mfu {m['mfu'] or 0:.3f}"
            + (f"  qlora speedup {m['qlora_speedup']:.2f}x" if "qlora_speedup" in m else ""),
            flush=True,
        )
        gc_.write_json(out, result(), quiet=True)  # after every model: a run cut short keeps what it measured
    gc_.write_json(out, result())


if __name__ == "__main__":
    main()
