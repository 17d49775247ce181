"""A measured learning rate: the LR range test (Smith, "Cyclical Learning Rates", arXiv:1506.01186 §3.3).

One short run of the recommended adapter on the user's model and data in which every optimizer step uses a
higher LR than the last — geometric from ``min_lr`` to ``max_lr`` — and the training loss of each step is
recorded. Where the loss falls fastest the LR is useful; where it turns up the LR is too high.

- Smoothing: an exponential moving average with bias correction, s_i = EMA_i / (1 − β^(i+1)), as fastai's
  ``lr_find`` smooths (β there is 0.98 over 100 steps; 0.9 here, for a window of ~10 of the ≤ 60 steps).
- Stop: once the smoothed loss passes 4× its minimum the run is diverging (fastai's ``stop_div`` rule) — or
  at once when a loss is not finite.
- Pick (:func:`pick_lr`, a pure function of the curve): the LR at the smoothed loss's minimum divided by
  10 — at the minimum the LR is already past the point where training is stable; one decade lower is where
  the loss was still falling fast (Smith, arXiv:1803.09820 §4.1; fastai's ``lr_min / 10``). The first 10 %
  of steps are ignored: their EMA rests on a handful of batches.

The probe trains like a trial (``trial/``): the PEFT model from :func:`build_peft_model`, the same
length-grouped micro-batches, loss, autocast, optimizer, clipping and speed paths; only the LR per step
differs, so the loop is written here (a trial's scheduler is cosine/linear/constant). The adapter is removed
with the trial's own ``cleanup`` (PEFT ``unload``, no merge): the runner's base model is left as it came.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from loratune.advise import explain as S
from loratune.errors import ConfigError, DataError

PROBE_STEPS = 60
MAX_PROBE_STEPS = 200  # a range test is short by design; more is a trial
MIN_LR, MAX_LR = 1e-5, 1e-1
BETA = 0.9  # EMA factor of the smoothed loss
DIVERGE_FACTOR = 4.0  # stop once smoothed > 4 × its minimum
SKIP_FRACTION = 0.1  # the first 10 % of steps never hold the minimum
PICK_DIVISOR = 10.0  # LR at the minimum / 10

RULE = "the LR at the smoothed loss's minimum ÷ 10 (fastai's lr_min/10)"
SOURCE = f"{S.RANGE_TEST}; {S.ONE_CYCLE}"  # the test; the pick


@dataclass(frozen=True)
class LRProbe:
    """What one range test measured: the LR of every step run, its loss, the smoothed curve and the pick."""

    lr: float  # the chosen learning rate
    lrs: list[float]  # the LR of each step that ran
    losses: list[float]  # the training loss of each step (mean token cross-entropy, nats)
    smoothed: list[float]  # bias-corrected EMA of ``losses``
    reason: str  # how ``lr`` was read off the curve, in words with its numbers
    stopped_early: bool  # True when divergence (or a non-finite loss) ended the run before ``planned_steps``
    planned_steps: int = PROBE_STEPS
    min_lr: float = MIN_LR
    max_lr: float = MAX_LR
    seconds: float = 0.0
    rule: str = RULE
    source: str = SOURCE

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["losses"] = [x if math.isfinite(x) else None for x in self.losses]  # JSON has no NaN
        d["smoothed"] = [x if math.isfinite(x) else None for x in self.smoothed]
        return d


def check_range(steps: int, min_lr: float, max_lr: float) -> None:
    """The probe's own arguments: ``steps`` 10–200, 0 < min_lr < max_lr, both finite."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 10 <= steps <= MAX_PROBE_STEPS:
        raise ConfigError(f"--probe-steps must be a whole number from 10 to {MAX_PROBE_STEPS}, got {steps!r}", "use 60")
    _check_lrs(min_lr, max_lr)


def _check_lrs(min_lr: float, max_lr: float) -> None:
    for name, v in (("min_lr", min_lr), ("max_lr", max_lr)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ConfigError(f"the probe's {name} must be a positive number, got {v!r}", "use e.g. 1e-5 and 1e-1")
    if min_lr >= max_lr:
        raise ConfigError(f"the probe's min_lr {min_lr:g} must be below max_lr {max_lr:g}", "use e.g. 1e-5 and 1e-1")


def lr_schedule(steps: int, min_lr: float = MIN_LR, max_lr: float = MAX_LR) -> list[float]:
    """``steps`` (≥ 2) LRs growing by one constant factor per step: min_lr · (max_lr/min_lr)^(i/(steps−1))."""
    _check_lrs(min_lr, max_lr)
    if steps < 2:
        raise ConfigError(f"a range test needs at least 2 steps, got {steps}", "use 60")
    ratio = max_lr / min_lr
    return [min_lr * ratio ** (i / (steps - 1)) for i in range(steps)]


def smooth(losses: Sequence[float], beta: float = BETA) -> list[float]:
    """Bias-corrected exponential moving average: avg_i = β·avg_(i−1) + (1−β)·loss_i, s_i = avg_i/(1−β^(i+1))."""
    out: list[float] = []
    avg = 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** (i + 1)))
    return out


def diverging(smoothed: Sequence[float], factor: float = DIVERGE_FACTOR) -> bool:
    """The last smoothed loss is not finite or above ``factor`` × the lowest so far."""
    if not smoothed:
        return False
    last = smoothed[-1]
    return not math.isfinite(last) or last > factor * min(smoothed)


def pick_lr(
    lrs: Sequence[float], smoothed: Sequence[float], *, skip: float = SKIP_FRACTION, divisor: float = PICK_DIVISOR
) -> tuple[float, str]:
    """(chosen LR, reason): the LR where the smoothed loss is lowest, divided by ``divisor`` (but not below the
    first LR tried), to two significant figures; the first ``skip`` share of steps is not considered. Needs a
    curve of ≥ 3 finite points."""
    points = [(i, s) for i, s in enumerate(smoothed[: len(lrs)]) if math.isfinite(s)]
    first = min(len(points) - 1, math.ceil(skip * len(lrs)))
    if len(points) < 3:
        raise DataError(
            f"the range test has {len(points)} finite loss point(s), too few to read an LR from",
            "give more training data or lower --probe-max-lr",
        )
    candidates = [p for p in points if p[0] >= first] or points
    i_min, s_min = min(candidates, key=lambda p: p[1])
    at_min = lrs[i_min]
    lr = float(f"{max(at_min / divisor, lrs[0]):.2g}")  # two significant figures, as the rule's advice
    reason = (
        f"smoothed loss lowest ({s_min:.3f}) at LR {at_min:.2e} (step {i_min + 1} of {len(lrs)}); "
        f"÷ {divisor:g} → {lr:.2e}"
    )
    if i_min == len(lrs) - 1 and s_min == smoothed[-1]:
        reason += "; the loss was still falling at the last LR tried (raise the probe's max LR to see the turn)"
    if at_min / divisor < lrs[0]:
        reason += "; held at the lowest LR tried"
    return lr, reason


def probe_learning_rate(
    runner: Any,
    spec: Any,
    settings: Any,
    train_examples: Sequence[Any],
    *,
    steps: int = PROBE_STEPS,
    min_lr: float = MIN_LR,
    max_lr: float = MAX_LR,
    on_step: Callable[[int, float, float], None] | None = None,
    progress: bool = False,
) -> LRProbe:
    """Run the range test of ``spec`` (an :class:`AdapterSpec`) on ``runner``'s base (a :class:`TrialRunner`)
    over ``train_examples`` (tokenized), trained as ``settings`` (a :class:`TrainSettings`: batch size,
    accumulation, length, dtype, seed, clipping) says; the LR of each step comes from :func:`lr_schedule`.
    ``on_step(step, lr, loss)`` after each step; ``progress``: a bar on stderr (trial/progress.py) as a trial
    shows. The runner's base model is unchanged afterwards."""
    check_range(steps, min_lr, max_lr)
    import torch
    from peft.helpers import disable_input_dtype_casting

    from loratune.trial.batching import as_examples, usable
    from loratune.trial.device import make_grad_scaler, speed_paths
    from loratune.trial.dropout import use_fast_dropout
    from loratune.trial.fused_lora import use_fused_lora
    from loratune.trial.fused_norm import fused_rms_norm
    from loratune.trial.loop import cleanup, make_optimizer, micro_batches
    from loratune.trial.loss import split_decoder_head
    from loratune.trial.peft_model import build_peft_model, enable_checkpointing
    from loratune.trial.progress import progress as progress_bar
    from loratune.trial.speed import attention_for, use_attention

    started = time.perf_counter()
    device = runner.device
    base = runner.model_for(settings.compute_dtype)
    examples = usable(as_examples(train_examples), settings.max_length)
    if not examples:
        raise DataError("no training example has a label token", "check the data format and --seq-len")
    tok = runner.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    if spec.method == "adalora":  # its rank budget needs a schedule; probe the plain LoRA of init_r (as search does)
        spec = replace(spec, method="lora", target_r=None)
    schedule = lr_schedule(steps, min_lr, max_lr)
    paths = speed_paths(device)
    lrs: list[float] = []
    losses: list[float] = []
    norm_switch = fused_rms_norm(base) if paths.fused_norm else contextlib.nullcontext(0)
    with use_attention(base, attention_for(examples, settings.max_length, device)), norm_switch:
        torch.manual_seed(settings.seed)  # LoRA A is random: the same seed as a trial of these settings
        peft_model, _ = build_peft_model(base, runner.anatomy, spec, steps, None)
        try:  # from here on the base carries adapter layers: `cleanup` removes them whatever happens
            if paths.fused_lora:
                use_fused_lora(peft_model)
            if paths.packed_dropout:
                use_fast_dropout(peft_model)
            if settings.grad_checkpointing:
                enable_checkpointing(peft_model.get_base_model())
            params = [p for p in peft_model.parameters() if p.requires_grad]
            optimizer = make_optimizer(params, settings)
            scaler = make_grad_scaler(settings.compute_dtype, device)
            parts = split_decoder_head(peft_model)
            batches = micro_batches(examples, settings, pad_id)
            peft_model.train()
            with (
                disable_input_dtype_casting(peft_model, active=settings.compute_dtype in ("bf16", "fp16")),
                progress_bar("LR range test", steps, enabled=progress) as bar,
            ):
                for step, lr in enumerate(schedule, 1):
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    loss = _step(peft_model, optimizer, scaler, params, settings, batches, parts, device)
                    lrs.append(lr)
                    losses.append(loss)
                    bar.advance(info=f"lr {lr:.1e}  loss {loss:.3f}")
                    if on_step is not None:
                        on_step(step, lr, loss)
                    if diverging(smooth(losses)):
                        break
        finally:
            cleanup(peft_model)
    smoothed = smooth(losses)
    lr, reason = pick_lr(lrs, smoothed)
    stopped = len(lrs) < steps
    if stopped:
        reason += f"; stopped at step {len(lrs)} of {steps}: the loss diverged at LR {lrs[-1]:.2e}"
    return LRProbe(
        lr=lr,
        lrs=lrs,
        losses=losses,
        smoothed=smoothed,
        reason=reason,
        stopped_early=stopped,
        planned_steps=steps,
        min_lr=min_lr,
        max_lr=max_lr,
        seconds=round(time.perf_counter() - started, 3),
    )


def _step(
    peft_model: Any,
    optimizer: Any,
    scaler: Any,
    params: list[Any],
    settings: Any,
    batches: Any,
    parts: Any,
    device: str,
) -> float:
    """One optimizer step of ``grad_accum`` micro-batches, normalised by the step's label tokens as a
    trial's (trial/loop.py ``train_loop``); returns the step's mean token loss (NaN/inf left as it is)."""
    import torch

    from loratune.trial.loss import token_loss_sum
    from loratune.trial.speed import autocast

    group = [next(batches).to(device) for _ in range(settings.grad_accum)]
    n_labels = sum(b.label_tokens for b in group)
    total = 0.0
    for b in group:
        with autocast(settings.compute_dtype, device):
            loss_sum, _ = token_loss_sum(peft_model, b.input_ids, b.labels, b.attention_mask, parts)
        loss = loss_sum / n_labels
        (scaler.scale(loss) if scaler is not None else loss).backward()
        total += float(loss_sum.detach())
    step_loss = total / n_labels
    if math.isfinite(step_loss):
        if scaler is not None:
            scaler.unscale_(optimizer)
        if settings.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return step_loss
