"""A sequence-classification trial (``--task-type seq-cls``), top to bottom like ``loop.py``:
setup → evaluate before → train → evaluate after → save → cleanup.

The model is transformers' ``AutoModelForSequenceClassification`` (an encoder's pooled [CLS] or a
decoder's last non-pad token, then a linear head). PEFT wraps it with ``task_type="SEQ_CLS"``, which
adds the head (``classifier`` / ``score``) to ``modules_to_save``: the head is a fully trained copy,
kept in fp32 here (the frozen base may be bf16). The loss is the mean cross-entropy over examples;
with gradient accumulation it is divided by the examples of the whole optimizer step. Metrics:
validation loss, accuracy and macro-F1 (``metrics.py``). The LoRA layers take the same fused path as
causal-LM trials (``fused_lora.py``, checked against PEFT's); the rest is PEFT's plain forward.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from peft.helpers import disable_input_dtype_casting

from loratune.anatomy import Anatomy
from loratune.budget import AdapterSpec
from loratune.errors import DataError
from loratune.trial.adapter_io import save_adapter
from loratune.trial.cls_data import ClsData, ClsRow, batches, collate, labels_of, prepare_cls, split_cls, tokenize_cls
from loratune.trial.dropout import use_fast_dropout
from loratune.trial.fused_lora import use_fused_lora
from loratune.trial.loop import (
    MEMORY_STEPS,
    _jsonable,
    _peak_memory,
    cleanup,
    make_optimizer,
    make_scheduler,
    record_run,
)
from loratune.trial.metrics import ClsScores, accuracy, macro_f1
from loratune.trial.peft_model import build_peft_model, enable_checkpointing
from loratune.trial.progress import progress as progress_bar
from loratune.trial.speed import autocast, set_threads
from loratune.trial.types import TrainSettings, TrialResult

__all__ = [
    "ClsData",
    "ClsRow",
    "batches",
    "collate",
    "evaluate_cls",
    "head_to_fp32",
    "labels_of",
    "prepare_cls",
    "run_cls_trial",
    "set_pad_token",
    "split_cls",
    "tokenize_cls",
]


def logits_of(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    return model(**inputs).logits.float()


@torch.no_grad()
def evaluate_cls(
    model: Any,
    rows: Sequence[ClsRow],
    *,
    pad_id: int,
    batch_size: int = 16,
    compute_dtype: str = "fp32",
    device: str = "cpu",
    max_batches: int | None = None,
) -> ClsScores | None:
    """Mean cross-entropy, accuracy and macro-F1 of ``model`` on ``rows`` (None when there are none)."""
    if not rows:
        return None
    was_training = model.training
    model.eval()
    loss_sum, preds, refs = 0.0, [], []
    for k, group in enumerate(batches(rows, batch_size, seed=0, shuffle=False)):
        if max_batches is not None and k >= max_batches:
            break
        batch = collate(group, pad_id, device)
        with autocast(compute_dtype, device):
            logits = logits_of(model, batch)
        loss_sum += float(torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="sum"))
        preds += logits.argmax(-1).tolist()
        refs += batch["labels"].tolist()
    if was_training:
        model.train()
    n = len(refs)
    return ClsScores(loss=loss_sum / n, accuracy=accuracy(preds, refs), f1=macro_f1(preds, refs), n=n)


def head_to_fp32(peft_model: Any) -> int:
    """The trained copies of ``modules_to_save`` (the head) in fp32, like the LoRA weights: a bf16
    master copy would lose AdamW's small updates to rounding. Returns their parameter count."""
    from peft.utils import ModulesToSaveWrapper

    n = 0
    for module in peft_model.modules():
        if isinstance(module, ModulesToSaveWrapper):
            for copy in module.modules_to_save.values():
                copy.float()
                n += sum(p.numel() for p in copy.parameters())
    return n


def set_pad_token(model: Any, tokenizer: Any) -> int:
    """The pad id batches use, written into the model config (a decoder classifier needs it)."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = pad_id
    return int(pad_id)


def run_cls_trial(
    base: Any,
    tokenizer: Any,
    anatomy: Anatomy,
    adapter: AdapterSpec,
    settings: TrainSettings,
    train: Sequence[ClsRow],
    val: Sequence[ClsRow],
    *,
    on_eval: Callable[[int, float], bool] | None = None,
    save_dir: Path | None = None,
    progress: bool = True,
    peft_extra: dict[str, Any] | None = None,
    device: str = "cpu",
    measure_memory: bool = True,
    threads: int | None = None,
    labels: Sequence[str] = (),
) -> TrialResult:
    started = time.perf_counter()
    # ---- setup
    threads = set_threads(threads) if device == "cpu" else torch.get_num_threads()
    train_rows, val_rows = list(train), list(val)
    if not train_rows:
        raise DataError("no training examples", "check the data file")
    pad_id = set_pad_token(base, tokenizer)
    steps_per_epoch = max(1, math.ceil(math.ceil(len(train_rows) / settings.batch_size) / settings.grad_accum))
    total_steps = settings.max_steps or max(1, math.ceil(settings.epochs * steps_per_epoch))
    result = TrialResult(
        extra={
            "threads": threads,
            "compute_dtype": settings.compute_dtype,
            "total_steps": total_steps,
            "task_type": "seq-cls",
            "labels": list(labels),
        }
    )
    clock = {"eval": 0.0}

    def scores(model: Any) -> ClsScores | None:
        t0 = time.perf_counter()
        s = evaluate_cls(
            model,
            val_rows,
            pad_id=pad_id,
            batch_size=settings.batch_size,
            compute_dtype=settings.compute_dtype,
            device=device,
            max_batches=settings.eval_batches,
        )
        clock["eval"] += time.perf_counter() - t0
        return s

    # ---- evaluate the base model (its head is freshly initialised: chance level is the baseline)
    before = scores(base)
    if before is not None:
        result.val_loss_before, result.val_accuracy_before, result.val_f1_before = (
            before.loss,
            before.accuracy,
            before.f1,
        )

    # ---- build the adapter (seeded: LoRA A is random)
    heads = head_modules(base)  # PEFT's unload() leaves the *trained* head copy in place: put these back
    torch.manual_seed(settings.seed)
    peft_model, warnings = build_peft_model(base, anatomy, adapter, total_steps, peft_extra, task_type="SEQ_CLS")
    result.warnings = list(warnings)
    try:
        result.extra["head_params"] = head_to_fp32(peft_model)
        result.extra["fused_lora_layers"] = use_fused_lora(peft_model)
        use_fast_dropout(peft_model)
        with disable_input_dtype_casting(peft_model, active=settings.compute_dtype == "bf16"):
            _train(
                peft_model,
                adapter,
                settings,
                train_rows,
                pad_id,
                total_steps,
                result,
                device=device,
                progress=progress,
                measure_memory=measure_memory,
                on_eval=on_eval,
                validate=(lambda m: _loss(scores(m))) if val_rows else None,
            )
            if result.status != "diverged":
                after = scores(peft_model)
                if after is not None:
                    result.val_loss_after, result.val_accuracy_after, result.val_f1_after = (
                        after.loss,
                        after.accuracy,
                        after.f1,
                    )
                    result.val_curve.append((result.steps, after.loss))
        result.extra["eval_seconds"] = round(clock["eval"], 3)
        result.wall_seconds = time.perf_counter() - started
        # ---- save
        if save_dir is not None and result.status != "diverged":
            result.adapter_dir = str(save_dir)
            metrics = result.to_dict()
            metrics["settings"] = settings.to_dict()
            metrics["peft_config"] = _jsonable(peft_model.peft_config["default"].to_dict())
            save_adapter(peft_model, Path(save_dir), metrics)
    finally:
        # ---- cleanup: adapter layers and the head's trained copy removed; the base is as it came
        cleanup(peft_model)
        restore_modules(base, heads)
    return result


def head_modules(model: Any) -> dict[str, Any]:
    """The modules PEFT's SEQ_CLS wraps as ``modules_to_save`` (names ending in ``classifier``/``score``)."""
    from loratune.anatomy.targets import SEQ_CLS_HEADS

    return {n: m for n, m in model.named_modules() if n and any(n.endswith(h) for h in SEQ_CLS_HEADS)}


def restore_modules(model: Any, modules: dict[str, Any]) -> None:
    for name, module in modules.items():
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, module)


def _train(
    peft_model: Any,
    adapter: AdapterSpec,
    settings: TrainSettings,
    rows: list[ClsRow],
    pad_id: int,
    total_steps: int,
    result: TrialResult,
    *,
    device: str,
    progress: bool,
    measure_memory: bool,
    on_eval: Callable[[int, float], bool] | None,
    validate: Callable[[Any], float | None] | None,
) -> None:
    if adapter.method == "adalora":
        raise DataError("AdaLoRA is not wired for classification trials", "use --method lora or dora")
    if settings.grad_checkpointing:
        enable_checkpointing(peft_model.get_base_model())
    params = [p for p in peft_model.parameters() if p.requires_grad]
    result.trainable_params = sum(p.numel() for p in params)
    optimizer = make_optimizer(params, settings)
    scheduler = make_scheduler(optimizer, settings, total_steps)
    peft_model.train()

    def stream() -> Iterator[list[ClsRow]]:
        epoch = 0
        while True:
            yield from batches(rows, settings.batch_size, seed=settings.seed + epoch)
            epoch += 1

    source = stream()
    step = tokens = 0
    train_seconds = 0.0
    memory = _peak_memory(device, [peft_model, optimizer]) if measure_memory else None
    with contextlib.ExitStack() as watching, progress_bar("training", total_steps, enabled=progress) as bar:
        if memory is not None:
            watching.enter_context(memory)
        while step < total_steps:
            t0 = time.perf_counter()
            group = [collate(next(source), pad_id, device) for _ in range(settings.grad_accum)]
            n = sum(int(b["labels"].numel()) for b in group)
            loss_total = 0.0
            for b in group:
                with autocast(settings.compute_dtype, device):
                    logits = logits_of(peft_model, b)
                loss_sum = torch.nn.functional.cross_entropy(logits, b["labels"], reduction="sum")
                (loss_sum / n).backward()
                loss_total += float(loss_sum.detach())
                tokens += int(b["attention_mask"].sum())
            step_loss = loss_total / n
            if not math.isfinite(step_loss):
                result.status = "diverged"
                result.message = f"the training loss became {step_loss} at step {step + 1}"
                break
            if settings.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            train_seconds += time.perf_counter() - t0
            result.loss_curve.append((step, step_loss))
            if step == MEMORY_STEPS:
                watching.close()
            bar.advance(info=f"loss {step_loss:.4f}  {tokens / train_seconds:,.0f} tok/s")
            if validate is not None and settings.eval_every and step % settings.eval_every == 0 and step < total_steps:
                val_loss = validate(peft_model)
                peft_model.train()
                if val_loss is not None:
                    result.val_curve.append((step, val_loss))
                    if on_eval is not None and on_eval(step, val_loss):
                        result.status = "pruned"
                        result.message = f"pruned at step {step} (val loss {val_loss:.4f})"
                        break
    record_run(result, step, tokens, train_seconds, memory)


def _loss(scores: ClsScores | None) -> float | None:
    return scores.loss if scores is not None else None
