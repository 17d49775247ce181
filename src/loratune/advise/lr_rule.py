"""The literature's LoRA learning rate: full fine-tuning's LR for the model's width, times LoRA's ratio to it.

    lr_LoRA(h, steps, α) = ratio(steps) · lr_FullFT(h) · 32 / α
    lr_FullFT(h)         = 5e-5 · (2000 / h) ** 0.781                    (h = hidden size)
    ratio(steps)         = 10 from 100 steps on, 15 up to 30 steps, log-linear in steps between

Sources.
- The ratio: the best LoRA LR is ≈ 10× the best full fine-tuning LR, whatever the rank, and ≈ 15× for short
  runs (B starts at zero, so the first steps move the weights less) — "LoRA Without Regret", Schulman et al.,
  Thinking Machines 2025, https://thinkingmachines.ai/blog/lora/. The same lab's code uses exactly 10
  (tinker-cookbook ``hyperparam_utils.get_lora_lr_over_full_finetune_lr``).
- The width dependence of the full fine-tuning LR: the fit behind that post's sweeps, ``get_lr`` in
  tinker-cookbook ``hyperparam_utils.py`` (github.com/thinking-machines-lab/tinker-cookbook): base 5e-5 at
  hidden size 2000, exponent 0.781 for the Llama 3 family (1B–70B, hidden 2048–8192). It falls almost as fast
  as µP's LR ∝ 1/width for hidden matrices (Yang et al., Tensor Programs V, arXiv:2203.03466). Qwen 3 was
  fitted with a flat 0.0775; loratune uses the Llama exponent for every family — it is the one that says
  how the LR moves with width, and SmolLM2 and most catalog models are Llama-shaped.
- The alpha: those ratios were measured at lora_alpha = 32 with the alpha/r factor (the post's runs fix
  α = 32; tinker-cookbook's ratio is ``get_lora_lr_over_full_finetune_lr(model_name, lora_alpha=32)``).
  At a fixed alpha the 1/r factor makes the best LR rank-independent, and alpha multiplies every update (B
  starts at zero, so Adam moves ΔW = (α/r)·BA by ≈ α/r·lr), so lr·α is what stays put: an adapter with
  α = 16 wants twice the α-32 LR. The seed's own pairs (α 32/16/8 ↔ 1e-4/2e-4/5e-4 at r = 8, 000 §2.3) and
  the ladder's hand-over (``search/ladder.py``) follow the same product.
- Where the ratio moves from 15 to 10 (30 → 100 steps) is loratune's reading of "short": on SmolLM2-135M
  (hidden 576) with 1,000 QA examples, the best LRs were 2e-3–4e-3 at ~30 steps and 1e-3 was within 1 % of the
  best at ~100 steps, 2e-4 17 % worse (issue #13) — this formula gives 2.0e-3 and 1.3e-3 there at α = 32.
  On bench/fidelity.py's full-length grids (32 steps, 24 variants, two tasks) the median best LR times
  alpha is 0.064 on both; the formula's is 1.9e-3 · 32 = 0.061.

Below hidden 2048 (SmolLM2, GPT-2) the fit is extrapolated; the rule says so. The value is rounded to two
significant figures: no LR rule is known better than that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from loratune.advise import explain as S
from loratune.advise.explain import Explanation
from loratune.errors import ConfigError

FULL_FT_BASE_LR = 5e-5  # full fine-tuning LR at hidden size WIDTH_ANCHOR (tinker-cookbook get_lr)
WIDTH_ANCHOR = 2000
WIDTH_EXPONENT = 0.781  # Llama 3 family fit (tinker-cookbook get_lr)
FIT_WIDTHS = (2048, 8192)  # the widths the fit was made on (Llama 3.2 1B … Llama 3.1 70B)
LORA_RATIO = 10.0  # LoRA Without Regret: best LoRA LR / best FullFT LR
SHORT_RATIO = 15.0  # … for short runs
SHORT_STEPS, LONG_STEPS = 30, 100  # ratio 15 up to SHORT_STEPS, 10 from LONG_STEPS, log-linear between
SOURCE_ALPHA = 32.0  # the lora_alpha the ratios were measured at (LoRA Without Regret; tinker-cookbook)


@dataclass(frozen=True)
class LRAdvice:
    """The rule's value and every number that went into it."""

    value: float  # the LoRA learning rate (two significant figures)
    full_ft_lr: float  # 5e-5 · (2000 / h)^0.781, unrounded
    ratio: float  # LoRA LR / FullFT LR for this run length
    hidden_size: int
    total_steps: int | None
    alpha: float  # the adapter's lora_alpha: lr · alpha is what carries over from the source's alpha 32
    rule: str  # the formula with this model's numbers in it

    def explanation(self) -> Explanation:
        return Explanation(
            "learning_rate",
            self.value,
            self.rule,
            f"{S.WITHOUT_REGRET}; {S.TINKER_LR}",
            {
                "hidden_size": self.hidden_size,
                "total_steps": self.total_steps,
                "full_ft_lr": round(self.full_ft_lr, 8),
                "lora_ratio": round(self.ratio, 3),
                "lora_alpha": self.alpha,
            },
        )


def full_ft_learning_rate(hidden_size: int) -> float:
    """Full fine-tuning LR for a model of this width: 5e-5 · (2000 / h)^0.781 [tinker-cookbook get_lr]."""
    if hidden_size <= 0:
        raise ConfigError(f"hidden size must be a positive width, got {hidden_size}", "read it from the model's config")
    return FULL_FT_BASE_LR * (WIDTH_ANCHOR / hidden_size) ** WIDTH_EXPONENT


def lora_ratio(total_steps: int | None) -> float:
    """LoRA LR / FullFT LR: 15 for short runs, 10 from 100 steps on [LoRA Without Regret]; log-linear in
    the step count between 30 and 100 steps (so the advice never jumps at one step count)."""
    if total_steps is None or total_steps >= LONG_STEPS:
        return LORA_RATIO
    if total_steps <= SHORT_STEPS:
        return SHORT_RATIO
    t = math.log(LONG_STEPS / total_steps) / math.log(LONG_STEPS / SHORT_STEPS)  # 0 at 100 steps, 1 at 30
    return LORA_RATIO * (SHORT_RATIO / LORA_RATIO) ** t


def lr_at_alpha(lr: float, alpha_from: float, alpha_to: float) -> float:
    """The LR that gives an adapter of ``alpha_to`` the update size ``lr`` gave one of ``alpha_from``: alpha
    multiplies every update and the 1/r factor makes the best LR rank-independent, so lr·α stays put
    [LoRA Without Regret]. One rule for the advice (from the source's alpha 32) and the ladder's hand-over."""
    return lr * alpha_from / alpha_to


def round_lr(lr: float) -> float:
    """Two significant figures: 1.3218e-3 → 1.3e-3."""
    return float(f"{lr:.2g}")


def lora_learning_rate(hidden_size: int, total_steps: int | None, alpha: float = SOURCE_ALPHA) -> LRAdvice:
    """The literature's LoRA learning rate for a model of this width trained for ``total_steps`` optimizer
    steps (None: unknown, the long-run ratio 10) with an adapter of this ``lora_alpha``."""
    if total_steps is not None and total_steps < 1:
        raise ConfigError(f"total steps must be at least 1, got {total_steps}", "leave it unset to use the schedule")
    if not alpha > 0:
        raise ConfigError(f"lora_alpha must be positive, got {alpha}", "use e.g. 2 × r")
    full = full_ft_learning_rate(hidden_size)
    ratio = lora_ratio(total_steps)
    value = round_lr(lr_at_alpha(ratio * full, SOURCE_ALPHA, alpha))
    lo, hi = FIT_WIDTHS
    fit = "" if lo <= hidden_size <= hi else f" (extrapolated: fitted on widths {lo}–{hi})"
    if total_steps is None:
        steps = "(no step count: the long-run ratio)"
    elif total_steps >= LONG_STEPS:
        steps = f"for {total_steps} steps (≥ {LONG_STEPS})"
    elif total_steps <= SHORT_STEPS:
        steps = f"for {total_steps} steps (≤ {SHORT_STEPS}: a short run)"
    else:
        steps = f"for {total_steps} steps (log-linear from 15× at {SHORT_STEPS} to 10× at {LONG_STEPS})"
    at_alpha = "" if alpha == SOURCE_ALPHA else f"; × 32/α = {SOURCE_ALPHA / alpha:.3g} for α = {alpha:g}"
    rule = (
        f"LoRA ≈ 10× full fine-tuning's LR (≈ 15× in short runs) at α = 32; full FT LR = 5e-5·(2000/h)^0.781 = "
        f"{full:.1e} at hidden size h = {hidden_size}{fit}; × {ratio:.3g} {steps}{at_alpha} → {value:.1e}. "
        "lr·α stays put (α scales every update); barely moves with r under 1/r scaling; tune it per method "
        "(DoRA etc.)."
    )
    return LRAdvice(value, full, ratio, hidden_size, total_steps, float(alpha), rule)
