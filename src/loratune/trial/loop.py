"""One trial, top to bottom: setup → evaluate before → train → evaluate after → save → cleanup.

No hidden trainer. Each optimizer step takes ``grad_accum`` length-grouped micro-batches; the loss
is summed over label tokens and divided by the label tokens of the whole step (the same
normalisation transformers' Trainer uses with ``num_items_in_batch``), so accumulation does not
change the gradient. The base model is left exactly as it came in (``cleanup``).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from peft.helpers import disable_input_dtype_casting

from loratune.anatomy import Anatomy
from loratune.budget import AdapterSpec
from loratune.errors import DataError
from loratune.models.quantized import load_flags, quant_of
from loratune.trial.adapter_io import save_adapter
from loratune.trial.batching import Batch, as_examples, iterate, usable
from loratune.trial.device import make_grad_scaler, speed_paths
from loratune.trial.dropout import use_fast_dropout
from loratune.trial.evaluate import mean_loss, safe_exp
from loratune.trial.fused_lora import use_fused_lora
from loratune.trial.fused_norm import fused_rms_norm
from loratune.trial.loss import split_decoder_head, token_loss_sum
from loratune.trial.peak_memory import PeakMemory
from loratune.trial.peft_model import build_peft_model, enable_checkpointing
from loratune.trial.progress import progress as progress_bar
from loratune.trial.speed import ThreadTuner, attention_for, autocast, set_threads, use_attention
from loratune.trial.types import TrainSettings, TrialResult

MEMORY_STEPS = 2  # optimizer steps watched by PeakMemory: the longest batch comes first, Adam state by step 2


def run_trial(
    base: Any,
    tokenizer: Any,
    anatomy: Anatomy,
    adapter: AdapterSpec,
    settings: TrainSettings,
    train: Any,
    val: Any,
    reference: Any = None,
    *,
    on_eval: Callable[[int, float], bool] | None = None,
    save_dir: Path | None = None,
    progress: bool = True,
    peft_extra: dict[str, Any] | None = None,
    device: str = "cpu",
    measure_memory: bool = True,
    threads: int | None = None,
) -> TrialResult:
    started = time.perf_counter()
    # ---- setup: data, schedule length, threads, attention kernel
    tune_threads = threads is None  # a count the caller fixed is kept for the whole run
    threads = set_threads(threads) if device == "cpu" else torch.get_num_threads()
    train_ex = usable(as_examples(train), settings.max_length)
    val_ex = usable(as_examples(val), settings.max_length) if val is not None else []
    ref_ex = usable(as_examples(reference), settings.max_length) if reference is not None else []
    if not train_ex:
        raise DataError("no training example has a label token", "check the data format and --max-length")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    micro_per_epoch = math.ceil(len(train_ex) / settings.batch_size)
    steps_per_epoch = max(1, math.ceil(micro_per_epoch / settings.grad_accum))
    total_steps = settings.max_steps or max(1, math.ceil(settings.epochs * steps_per_epoch))
    evaluate = partial(
        mean_loss,
        pad_id=pad_id,
        batch_size=settings.batch_size,
        max_length=settings.max_length,
        max_batches=settings.eval_batches,
    )
    result = TrialResult(
        extra={"threads": threads, "compute_dtype": settings.compute_dtype, "total_steps": total_steps}
    )
    # Where and how it ran (issue #12): the device, the base's quantization, the speed paths it took.
    paths = speed_paths(device)
    result.extra.update(device=device, quant=quant_of(base), speed_paths=paths.to_dict())
    norm_switch = fused_rms_norm(base) if paths.fused_norm else contextlib.nullcontext(0)
    clock = {"eval": 0.0}

    def timed_eval(model: Any, data: list[Any]) -> float | None:
        if not data:
            return None
        t0 = time.perf_counter()
        value = evaluate(model, data)
        clock["eval"] += time.perf_counter() - t0
        return value

    with (
        use_attention(base, attention_for(train_ex + val_ex + ref_ex, settings.max_length, device)),
        norm_switch as norms,
    ):
        result.extra["attention"] = getattr(base.config, "_attn_implementation", None)
        result.extra["fused_rms_norms"] = norms
        # ---- evaluate the base model
        result.val_loss_before = timed_eval(base, val_ex)
        result.ref_ppl_before = safe_exp(timed_eval(base, ref_ex))

        # ---- build the adapter (seeded: LoRA A is random)
        torch.manual_seed(settings.seed)
        peft_model, warnings = build_peft_model(base, anatomy, adapter, total_steps, peft_extra)
        result.warnings = list(warnings)
        try:  # from here on the base carries adapter layers: whatever happens, `cleanup` removes them
            # One autograd node per plain LoRA linear instead of ~8 ops (fused_lora.py); same parameters.
            # The layers it does not cover (DoRA, AdaLoRA, GPT-2's Conv1D) keep PEFT's forward with a
            # dropout of the same distribution at ~half the CPU time (dropout.py).
            result.extra["fused_lora_layers"] = use_fused_lora(peft_model) if paths.fused_lora else 0
            if paths.packed_dropout:
                use_fast_dropout(peft_model)
            # Under bf16 autocast PEFT need not cast activations to the fp32 adapter dtype (speed.autocast).
            with disable_input_dtype_casting(peft_model, active=settings.compute_dtype in ("bf16", "fp16")):
                # ---- train
                train_loop(
                    peft_model,
                    adapter,
                    settings,
                    train_ex,
                    pad_id,
                    total_steps,
                    result,
                    validate=(lambda m: timed_eval(m, val_ex)) if val_ex else None,
                    on_eval=on_eval,
                    progress=progress,
                    device=device,
                    measure_memory=measure_memory,
                    tune_threads=tune_threads,
                )
                # ---- evaluate the adapted model
                if result.status != "diverged":
                    check_finite_weights(peft_model, result)
                if result.status != "diverged":
                    result.val_loss_after = timed_eval(peft_model, val_ex)
                    ref_loss_after = timed_eval(peft_model, ref_ex)
                    result.ref_ppl_after = safe_exp(ref_loss_after)
                    if result.val_loss_after is not None:
                        result.val_curve.append((result.steps, result.val_loss_after))
                    # A last step can blow the weights up with a finite training loss: the losses after
                    # training tell (a NaN adapter must not be saved as a good one).
                    for what, value in (("validation", result.val_loss_after), ("reference", ref_loss_after)):
                        if value is not None and not math.isfinite(value) and result.status != "diverged":
                            result.status = "diverged"
                            result.message = f"the {what} loss after training is {value}"
            result.val_ppl_before = safe_exp(result.val_loss_before)
            result.val_ppl_after = safe_exp(result.val_loss_after)
            result.extra["eval_seconds"] = round(clock["eval"], 3)
            if adapter.method == "adalora":
                pattern = peft_model.peft_config["default"].rank_pattern or {}
                result.extra["adalora_final_ranks"] = {
                    k.replace(".lora_E.default", ""): int(sum(v)) for k, v in pattern.items()
                }
            result.wall_seconds = time.perf_counter() - started

            # ---- save
            if save_dir is not None and result.status != "diverged":
                result.adapter_dir = str(save_dir)
                metrics = result.to_dict()
                metrics["settings"] = settings.to_dict()
                metrics["peft_config"] = _jsonable(peft_model.peft_config["default"].to_dict())
                metrics["load"] = load_flags(base)  # how the base was loaded (quantization), not the adapter
                save_adapter(peft_model, Path(save_dir), metrics)
        finally:
            # ---- cleanup: the base model goes back exactly as it came
            cleanup(peft_model)
    return result


def train_loop(
    peft_model: Any,
    adapter: AdapterSpec,
    settings: TrainSettings,
    train_ex: list[Any],
    pad_id: int,
    total_steps: int,
    result: TrialResult,
    *,
    validate: Callable[[Any], float | None] | None,
    on_eval: Callable[[int, float], bool] | None,
    progress: bool,
    device: str,
    measure_memory: bool,
    tune_threads: bool = True,
) -> None:
    """The optimizer steps; fills ``result`` (losses, tokens, speed, memory, status)."""
    if settings.grad_checkpointing:
        enable_checkpointing(peft_model.get_base_model())
    params = [p for p in peft_model.parameters() if p.requires_grad]
    result.trainable_params = sum(p.numel() for p in params)
    optimizer = make_optimizer(params, settings)
    scaler = make_grad_scaler(settings.compute_dtype, device)  # fp16 only: a loss scaler
    scheduler = make_scheduler(optimizer, settings, total_steps)
    adalora = adapter.method == "adalora"
    orth_weight = float(peft_model.peft_config["default"].orth_reg_weight) if adalora else 0.0
    orth_params = adalora_pq(peft_model) if orth_weight > 0 else []
    parts = split_decoder_head(peft_model)
    result.extra["logits_at_label_positions_only"] = parts is not None

    peft_model.train()
    batches = micro_batches(train_ex, settings, pad_id)
    tokens = padded = step = 0
    train_seconds = 0.0
    memory = _peak_memory(device, [peft_model, optimizer]) if measure_memory else None
    tuner = ThreadTuner.for_this_machine(fixed=not tune_threads) if device == "cpu" else None
    with contextlib.ExitStack() as watching, progress_bar("training", total_steps, enabled=progress) as bar:
        if memory is not None:
            watching.enter_context(memory)
        while step < total_steps:
            if tuner is not None:
                tuner.before_step()
            t0 = time.perf_counter()
            group = [next(batches).to(device) for _ in range(settings.grad_accum)]
            n_labels = sum(b.label_tokens for b in group)
            loss_total = 0.0
            for b in group:
                with autocast(settings.compute_dtype, device):
                    loss_sum, _ = token_loss_sum(peft_model, b.input_ids, b.labels, b.attention_mask, parts)
                loss = loss_sum / n_labels
                if orth_weight > 0:
                    # AdaLoRA [2303.10512] eq. 4: keep P and Q near-orthogonal (PEFT's AdaLoraModel.forward).
                    loss = loss + orth_weight * orthogonal_regularizer(orth_params) / settings.grad_accum
                (scaler.scale(loss) if scaler is not None else loss).backward()
                loss_total += float(loss_sum.detach())
                tokens += b.tokens
                padded += b.input_ids.numel()
            step_loss = loss_total / n_labels
            if not math.isfinite(step_loss):
                result.status = "diverged"
                result.message = f"the training loss became {step_loss} at step {step + 1}"
                break
            if scaler is not None:
                scaler.unscale_(optimizer)
            if settings.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
            if scaler is not None:
                scaler.step(optimizer)  # skipped when the scaled gradients overflowed
                scaler.update()
            else:
                optimizer.step()
            if adalora:
                # PEFT: call after optimizer.step() and before zero_grad(); it reads the gradients.
                peft_model.base_model.update_and_allocate(step)
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            seconds = time.perf_counter() - t0
            train_seconds += seconds
            if tuner is not None:
                tuner.after_step(sum(b.tokens for b in group), seconds)
            result.loss_curve.append((step, step_loss))
            if step == MEMORY_STEPS:
                watching.close()  # the dispatch-mode counter costs a few % per op: watch only the first steps
            bar.advance(info=f"loss {step_loss:.4f}  {tokens / train_seconds:,.0f} tok/s")
            if validate is not None and settings.eval_every and step % settings.eval_every == 0 and step < total_steps:
                val_loss = validate(peft_model)
                peft_model.train()
                assert val_loss is not None
                result.val_curve.append((step, val_loss))
                if on_eval is not None and on_eval(step, val_loss):
                    result.status = "pruned"
                    result.message = f"pruned at step {step} (val loss {val_loss:.4f})"
                    break
    record_run(result, step, tokens, train_seconds, memory, memory_note=", longest batch first")
    result.extra["padding_fraction"] = round(1 - tokens / padded, 4) if padded else 0.0
    if tuner is not None:
        result.extra["threads"] = torch.get_num_threads()
        result.extra["thread_changes"] = [list(t) for t in tuner.trace]


def record_run(
    result: TrialResult, step: int, tokens: int, train_seconds: float, memory: Any, *, memory_note: str = ""
) -> None:
    """What every trial loop (causal LM, classifier) records once its steps are done."""
    result.steps = step
    result.train_tokens = tokens
    result.tokens_per_second = tokens / train_seconds if train_seconds else 0.0
    result.train_loss_final = result.loss_curve[-1][1] if result.loss_curve else None
    if memory is not None:
        result.peak_memory_bytes = int(memory.peak_bytes)
        result.extra["peak_memory_scope"] = f"first {min(MEMORY_STEPS, step or 1)} optimizer step(s){memory_note}"
    result.extra["train_seconds"] = round(train_seconds, 3)


def check_finite_weights(peft_model: Any, result: TrialResult) -> None:
    """Mark the trial diverged when a trainable weight is NaN or infinite (one reduction per tensor)."""
    for name, p in peft_model.named_parameters():
        if p.requires_grad and not bool(torch.isfinite(p).all()):
            result.status = "diverged"
            result.message = f"adapter weight {name} is not finite after step {result.steps}"
            return


def make_optimizer(params: list[torch.nn.Parameter], settings: TrainSettings) -> torch.optim.Optimizer:
    # AdamW with transformers' Trainer defaults (betas 0.9/0.999, eps 1e-8); the fused kernel does
    # one pass over all LoRA tensors instead of ~10 small ops per tensor.
    try:
        return torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, settings: TrainSettings, total_steps: int) -> Any:
    from transformers import get_scheduler

    name = "constant_with_warmup" if settings.scheduler == "constant" else settings.scheduler
    warmup = math.ceil(settings.warmup_ratio * total_steps)
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)


def micro_batches(examples: Sequence[Any], settings: TrainSettings, pad_id: int) -> Iterator[Batch]:
    """Endless stream of length-grouped batches, reshuffled each epoch."""
    epoch = 0
    while True:
        yield from iterate(examples, settings.batch_size, settings.max_length, pad_id, seed=settings.seed + epoch)
        epoch += 1


def adalora_pq(peft_model: Any) -> list[tuple[bool, torch.Tensor]]:
    """AdaLoRA's trainable Q (lora_A, flag True) and P (lora_B) matrices, found once per trial."""
    return [
        ("lora_A" in name, p)
        for name, p in peft_model.named_parameters()
        if ("lora_A" in name or "lora_B" in name) and p.requires_grad
    ]


def orthogonal_regularizer(pq: list[tuple[bool, torch.Tensor]]) -> torch.Tensor:
    """Mean ‖PᵀP − I‖_F over AdaLoRA's P (lora_B) and Q (lora_A) matrices, as PEFT computes it."""
    total: Any = 0.0
    for is_a, p in pq:
        cov = p @ p.T if is_a else p.T @ p
        total = total + torch.linalg.matrix_norm(cov - torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device))
    return total / max(len(pq), 1)


def cleanup(peft_model: Any) -> Any:
    """Remove every adapter layer (no merge) so the base model is exactly what it was."""
    base = peft_model.get_base_model()
    if getattr(base, "supports_gradient_checkpointing", False):
        # transformers 5 renamed it (the old name warns); 4.x has only the old one.
        disable = getattr(base, "activation_checkpointing_disable", None) or base.gradient_checkpointing_disable
        disable()
    restored = peft_model.unload()
    for attr in ("peft_config", "_hf_peft_config_loaded"):
        if hasattr(restored, attr) and attr in restored.__dict__:
            delattr(restored, attr)
    restored.eval()
    for p in restored.parameters():
        p.requires_grad_(False)
    return restored


def _peak_memory(device: str, track: list[Any]) -> Any:
    return PeakMemory(device if device.startswith("cuda") else "cpu", track=track)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)
