"""Each rule: inputs → value + explanation + source. Pure functions, no anatomy, no torch.

Seed rules come first in each group, then the literature's; ``recommend`` picks the side by
``--rules`` and attaches the other as the alternative where they differ.
"""

from __future__ import annotations

import math
from dataclasses import replace

from loratune.advise import explain as S
from loratune.advise.explain import Explanation
from loratune.advise.lr_rule import lora_learning_rate
from loratune.advise.tasks import TaskClass
from loratune.budget.spec import default_alpha

GiB = 1024**3


# ---------------------------------------------------------------- rank ranges (seed 000 §1.2, 003 §4.1)
def rank_range_by_dataset(n: int) -> tuple[int, int]:
    """seed 000 §1.2 기준 2: <1k → 4–8, 1k–10k → 8–16, 10k–100k → 16–32, >100k → 32–64.
    The guide files its own 1,000-sample project under "< 1,000" (r=8), so 1,000 belongs to the first bucket."""
    if n <= 1000:
        return (4, 8)
    if n <= 10_000:
        return (8, 16)
    if n <= 100_000:
        return (16, 32)
    return (32, 64)


def recommend_rank(dataset_size: int) -> int:
    """seed 003 §4.1, verbatim: <1000 → 8, <5000 → 16, <20000 → 32, else 64."""
    if dataset_size < 1000:
        return 8
    if dataset_size < 5000:
        return 16
    if dataset_size < 20000:
        return 32
    return 64


def rank_range_by_model_size(total_params: int) -> tuple[int, int]:
    """seed 000 §1.2 기준 3: <1B → 4–16, 1–7B → 16–32, 7–30B → 32–64, >30B → 64–128."""
    if total_params < 1e9:
        return (4, 16)
    if total_params < 7e9:
        return (16, 32)
    if total_params < 30e9:
        return (32, 64)
    return (64, 128)


def rank_range_by_vram(vram_bytes: int) -> tuple[int, int]:
    """seed 000 §1.2 기준 4: 4 GB → 4–8, 8 GB → 8–16, 12 GB → 16–32, 24 GB+ → 32–64."""
    if vram_bytes < 8 * GiB:
        return (4, 8)
    if vram_bytes < 12 * GiB:
        return (8, 16)
    if vram_bytes < 24 * GiB:
        return (16, 32)
    return (32, 64)


def seed_rank(task: TaskClass | None, n: int | None, total_params: int, vram_bytes: int | None) -> Explanation:
    """The seed's four criteria together: start from the task's value (or chapter 12's table when no
    task is given), then clamp into each criterion's range in turn; a range that excludes all the
    others is reported and skipped."""
    if task is not None:
        start, why = task.rank, f"task '{task.name}' → r={task.rank} ({S.SEED_TASK})"
        ranges = [("task", task.rank_range, S.SEED_TASK)]
        if n is not None:
            ranges.append((f"dataset {n:,}", rank_range_by_dataset(n), S.SEED_DATA))
    elif n is not None:
        start, why = recommend_rank(n), f"recommend_rank({n:,}) = {recommend_rank(n)} ({S.SEED_CH12})"
        ranges = []
    else:
        start, why = 8, f"no task or dataset size: the seed's starting point r=8 ({S.SEED_QUICK})"
        ranges = []
    ranges.append((f"model {total_params / 1e9:.2f} B params", rank_range_by_model_size(total_params), S.SEED_MODEL))
    if vram_bytes is not None:
        ranges.append((f"VRAM {vram_bytes / GiB:.0f} GiB", rank_range_by_vram(vram_bytes), S.SEED_VRAM))
    lo, hi = 0, 1 << 30
    kept, skipped = [], []
    for label, (a, b), _ in ranges:
        if max(lo, a) <= min(hi, b):
            lo, hi = max(lo, a), min(hi, b)
            kept.append(f"{label}: {a}–{b}")
        else:
            skipped.append(f"{label}: {a}–{b}")
    value = min(max(start, lo), hi)
    rule = f"{why}; clamped into {lo}–{hi} by " + "; ".join(kept)
    if skipped:
        rule += f" (ignored, conflicts with the others: {'; '.join(skipped)})"
    sources = ", ".join(dict.fromkeys(src for *_, src in ranges))
    inputs = {"start": start, "ranges": {label: list(rng) for label, rng, _ in ranges}}
    if n is not None:
        inputs["recommend_rank"] = recommend_rank(n)
    return Explanation("r", value, rule, sources, inputs)


def capacity_rank(tokens: int, params_at_r1: int) -> int:
    """Smallest power-of-two r whose adapter can hold the data: LoRA stores ~2 bits per parameter and
    a dataset carries ~1 bit per token, so trainable params × 2 ≳ dataset tokens [LoRA Without Regret]."""
    if tokens <= 0 or params_at_r1 <= 0:
        return 1
    need = math.ceil(tokens / (2 * params_at_r1))
    return 1 << max(0, (need - 1).bit_length())


def literature_rank(tokens: int | None, params_at_r1: int, tokens_note: str) -> Explanation:
    """r=8 is already near the best [LoRA Table 6], rank hardly matters once every linear layer is
    adapted [QLoRA]; raise it only when the data would not fit the adapter's capacity."""
    cap = capacity_rank(tokens, params_at_r1) if tokens else 1
    value = max(8, cap)
    rule = (
        f"r=8 is near the best already and rank matters little with all layers adapted; "
        f"capacity check: {params_at_r1:,} params per unit of r × 2 bits ≥ {tokens or 0:,} tokens needs r ≥ {cap}"
    )
    return Explanation(
        "r",
        value,
        rule,
        f"{S.LORA} Table 6; {S.QLORA}; {S.WITHOUT_REGRET}",
        {"dataset_tokens": tokens, "tokens": tokens_note, "params_per_rank": params_at_r1, "capacity_r": cap},
    )


def combined_rank(task: TaskClass, tokens: int | None, params_at_r1: int, tokens_note: str) -> Explanation:
    """The seed's complexity ladder (it agrees with 2405.09673: domain shift, not size, decides rank),
    raised to the capacity floor; no model-size or dataset-count tables."""
    cap = capacity_rank(tokens, params_at_r1) if tokens else 1
    value = max(task.rank, cap)
    rule = (
        f"task '{task.name}' → r={task.rank} (complexity; domain shift decides rank), "
        f"raised to the capacity floor r ≥ {cap} (trainable params × 2 ≥ {tokens or 0:,} tokens)"
    )
    return Explanation(
        "r",
        value,
        rule,
        f"{S.SEED_TASK}; {S.LEARNS_LESS}; {S.WITHOUT_REGRET}",
        {"task": task.name, "dataset_tokens": tokens, "tokens": tokens_note, "capacity_r": cap},
    )


def rank_ceiling(dims: list[tuple[int, int]]) -> int:
    """The largest recommended r for adapted matrices of shape (in, out): the largest power of two below
    every matrix's break-even rank in·out/(in + out) — where the adapter's r·(in + out) parameters would
    reach the matrix's own in·out (d/2 for a square d × d), so LoRA stops being a low-rank update
    [LoRA 2106.09685 §4.1: r ≪ min(d, k)]. GPT-2's c_proj (768 → 768): 384 → r ≤ 256."""
    if not dims:
        return 1 << 16
    even = min(i * o / (i + o) for i, o in dims)
    return 1 << (max(1, math.floor(even)).bit_length() - 1)


def cap_rank(ex: Explanation, cap: int, why: str) -> Explanation:
    """``ex`` with its value lowered to ``cap`` (and the rule saying so) when it is above it."""
    if int(ex.value) <= cap:
        return ex
    return replace(
        ex,
        value=cap,
        rule=f"{ex.rule}; capped at {cap}: {why}",
        source=f"{ex.source}; {S.LORA} §4.1",
        inputs={**ex.inputs, "uncapped_r": int(ex.value), "rank_ceiling": cap},
    )


RANK_WHY = (
    "loratune follows the literature here: a larger model needs a lower rank for the same task "
    f"[{S.EXPRESSIVE}], so the seed's model-size ranges push the wrong way; example counts say less than "
    f"tokens [{S.WITHOUT_REGRET}]; VRAM is handled by the fit step, not by the rank rule."
)


# ---------------------------------------------------------------- alpha, rsLoRA, learning rate
def alpha_rule(r: int) -> Explanation:
    """seed 000 §2.2 규칙 1 and 2405.09673 agree: alpha = 2r (scaling 2.0)."""
    alpha = default_alpha(r)
    return Explanation(
        "lora_alpha",
        alpha,
        f"alpha = 2·r = {alpha} (scaling alpha/r = 2.0); alpha/r acts as a learning-rate multiplier, "
        "so it stays fixed and the learning rate is tuned instead",
        f"{S.SEED_ALPHA}; {S.LEARNS_LESS}; {S.QLORA}",
        {"r": r},
        note="seed variants for a search: alpha = r (conservative), 4r (aggressive).",
    )


def rslora_rule(r: int) -> Explanation:
    return Explanation(
        "use_rslora",
        False,
        "off: for one fixed r, alpha/√r only rescales alpha; it matters when r is searched with alpha held "
        f"fixed (then turn it on so the learning rate transfers across ranks [{S.RSLORA}]). With 1/r scaling the "
        f"best LR moves < 2× between r=4 and 512 [{S.WITHOUT_REGRET}]",
        f"{S.RSLORA}; {S.WITHOUT_REGRET}",
        {"r": r},
    )


# seed 000 §2.3: (alpha 32, lr 1e-4), (16, 2e-4), (8, 5e-4) — at the project's r=8, i.e. scaling 4, 2, 1.
_SEED_LR = {4.0: 1e-4, 2.0: 2e-4, 1.0: 5e-4}


def lr_seed(scaling: float) -> Explanation:
    key = min(_SEED_LR, key=lambda s: abs(math.log(s / scaling)))
    return Explanation(
        "learning_rate",
        _SEED_LR[key],
        f"alpha/r = {scaling:g} → lr {_SEED_LR[key]:g} (the seed's pairs at r=8: alpha 32/16/8 ↔ 1e-4/2e-4/5e-4)",
        S.SEED_ALPHA_LR,
        {"scaling": scaling},
    )


def lr_literature(hidden_size: int, total_steps: int | None, alpha: float) -> Explanation:
    """LoRA ≈ 10× full fine-tuning's LR for the model's width (≈ 15× for short runs) at α = 32, × 32/α:
    ``lr_rule.py``."""
    return lora_learning_rate(hidden_size, total_steps, alpha).explanation()


# ---------------------------------------------------------------- dropout
def dropout_seed(task: TaskClass) -> Explanation:
    """seed 000 §4.1: 0.05 (simple QA, memory-constrained), 0.1 (complex generation)."""
    complex_task = task.name in ("generation", "expert")
    return Explanation(
        "lora_dropout",
        0.1 if complex_task else 0.05,
        f"task '{task.name}': "
        + ("complex generation scenario → 0.1" if complex_task else "simple-QA / memory scenarios → 0.05"),
        S.SEED_PRESETS,
        {"task": task.name},
    )


def dropout_literature(total_params: int) -> Explanation:
    """QLoRA (App. B): dropout 0.1 for models up to 13B, 0.05 for 33B and 65B."""
    small = total_params <= 20e9
    return Explanation(
        "lora_dropout",
        0.1 if small else 0.05,
        f"model {total_params / 1e9:.1f} B: " + ("≤ 13B-class → 0.1" if small else "33B-class and up → 0.05"),
        QLORA_APPENDIX,
        {"total_params": total_params},
    )


QLORA_APPENDIX = f"{S.QLORA} App. B"
DROPOUT_WHY = (
    "loratune follows the seed: both sides stay within 0.05–0.1; the seed ties dropout to the task, "
    "QLoRA's values come from one chat-tuning setup. Search can tune it."
)


# ---------------------------------------------------------------- DoRA
def dora_seed(goal: str) -> Explanation:
    """The seed files differ: every scenario of seed 000 (and its measured run) is plain LoRA; seed 003 §6
    recommends DoRA "when performance must be optimised" and closes with "use DoRA by default in practice"."""
    if goal == "quality":
        return Explanation(
            "use_dora", True, "goal=quality: DoRA for performance optimisation (강력 추천)", S.SEED_DORA, {"goal": goal}
        )
    why = (
        "goal=memory: DoRA adds one magnitude vector per module and the weight-norm activations"
        if goal == "memory"
        else "plain LoRA, as in every scenario of the guide and its measured run"
    )
    return Explanation("use_dora", False, why, f"{S.SEED_PRESETS}; {S.SEED_RESULT}", {"goal": goal})


SEED_DORA_DEFAULT = S.Alternative(True, "use DoRA (use_dora=True) by default in practice", S.SEED_DORA)


def dora_literature(goal: str) -> Explanation:
    if goal == "quality":
        return Explanation(
            "use_dora",
            True,
            "goal=quality: DoRA gains +1 to +4 points over LoRA at equal rank, most at low rank; it costs "
            "memory and step time (unless merged); tune its LR separately",
            f"{S.DORA}; {S.LR_MATTERS}",
            {"goal": goal},
        )
    return Explanation(
        "use_dora",
        False,
        "off: once the learning rate is tuned per method, DoRA lands within 1–2 % of plain LoRA, and it costs "
        "memory and step time",
        f"{S.LR_MATTERS}; {S.DORA}",
        {"goal": goal},
    )


DORA_WHY = (
    "loratune does not turn DoRA on by default: the seed's gain comes from comparing methods at one shared LR "
    "[2602.04998]."
)


# ---------------------------------------------------------------- layers_to_transform (forgetting)
def layers_seed(num_layers: int, protect: bool) -> Explanation:
    if not protect:
        return Explanation("layers_to_transform", None, "all layers (no --protect-knowledge)", S.SEED_LAYERS)
    start = num_layers // 2
    return Explanation(
        "layers_to_transform",
        list(range(start, num_layers)),
        f"--protect-knowledge: train only the later half (layers {start}–{num_layers - 1}); early layers keep "
        "general knowledge",
        S.SEED_LAYERS,
        {"num_layers": num_layers},
    )


def layers_literature(protect: bool) -> Explanation:
    return Explanation(
        "layers_to_transform",
        None,
        "all layers: forgetting is controlled mainly by rank and training length (LoRA already forgets less "
        "than full FT); there is no evidence that later-layers-only is the right guard — measure forgetting"
        if protect
        else "all layers",
        S.LEARNS_LESS,
        {"protect_knowledge": protect},
    )


LAYERS_WHY = (
    "loratune follows the literature: it shortens training instead (see epochs) and asks you to measure "
    "forgetting on held-out general text; try the seed's later-half variant as a trial."
)


# ---------------------------------------------------------------- batch, epochs, steps
def batch_rule(n: int | None) -> Explanation:
    """Effective batch 16 (≤ 32 is safer for LoRA), at most n/10 so an epoch has ≥ 10 optimizer steps."""
    eff = 16
    if n is not None:
        eff = min(16, max(1, n // 10))
        eff = 1 << (eff.bit_length() - 1)  # a power of two, so micro-batch × accumulation splits evenly
    return Explanation(
        "effective_batch_size",
        eff,
        "effective batch 16 (LoRA pays more than full FT at large batches; ≤ 32 is safer)"
        + (", at most dataset/10 so an epoch has ≥ 10 optimizer steps" if n is not None else ""),
        f"{S.WITHOUT_REGRET}; {S.LORATUNE}",
        {"dataset_size": n},
    )


def epochs_rule(n: int | None, protect: bool) -> Explanation:
    """Fewer passes as data grows; forgetting grows with training length [2405.09673]."""
    if n is None:
        value = 3
    elif n < 1000:
        value = 5
    elif n < 10_000:
        value = 3
    elif n < 100_000:
        value = 2
    else:
        value = 1
    rule = (
        "5 / 3 / 2 / 1 epochs for < 1k / < 10k / < 100k / more examples (keeps total steps in the hundreds–thousands)"
    )
    if protect and value > 2:
        value = 2
        rule += "; --protect-knowledge caps it at 2: forgetting grows with training length"
    ex = Explanation("num_train_epochs", value, rule, f"{S.LORATUNE}; {S.LEARNS_LESS}", {"dataset_size": n})
    if n is not None and n <= 1000:
        ex = Explanation(
            ex.param,
            ex.value,
            ex.rule,
            ex.source,
            ex.inputs,
            alternative=S.Alternative(20, "the seed's measured run: 20 epochs on 1,000 examples", S.SEED_RESULT),
            note="loratune does not follow it: that run reached perplexity 1.05, a sign of memorising the data.",
        )
    return ex
