"""The report's figures as PNG bytes (matplotlib's Agg backend: no display, no server)."""

from __future__ import annotations

import io
import math
from typing import Any

from loratune.search.knee import VariantScore, pareto_front
from loratune.search.study import TrialRecord

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
MARKERS = {1.0: "o", 2.0: "s", 4.0: "^"}


def _figure(width: float = 6.4, height: float = 4.0) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _groups(scores: list[VariantScore]) -> dict[str, list[VariantScore]]:
    out: dict[str, list[VariantScore]] = {}
    for s in scores:
        v = s.variant
        key = v.modules + (f" {v.method}" if v.method != "lora" else "") + (f" layers {v.layers}" if v.layers else "")
        out.setdefault(key, []).append(s)
    return out


def ppl_vs_rank(scores: list[VariantScore], chosen: VariantScore | None) -> bytes:
    fig, ax = _figure()
    for i, (name, group) in enumerate(sorted(_groups(scores).items())):
        color = COLORS[i % len(COLORS)]
        by_r: dict[int, float] = {}
        for s in group:
            by_r[s.variant.r] = min(by_r.get(s.variant.r, math.inf), s.ppl)
            ax.scatter(s.variant.r, s.ppl, color=color, marker=MARKERS.get(s.variant.alpha_ratio, "D"), alpha=0.6)
        rs = sorted(by_r)
        ax.plot(rs, [by_r[r] for r in rs], color=color, label=f"{name} (best α per r)")
    if chosen is not None:
        ax.scatter(
            chosen.variant.r, chosen.ppl, s=220, facecolors="none", edgecolors="black", linewidths=2, label="chosen"
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("rank r (markers: ○ α=r, □ α=2r, △ α=4r)")
    ax.set_ylabel("validation perplexity (best LR)")
    ax.set_title("Perplexity vs rank")
    ax.legend(fontsize=8)
    return _png(fig)


def pareto(scores: list[VariantScore], chosen: VariantScore | None, cost: str, tolerance: float) -> bytes:
    fig, ax = _figure()
    pts = [(s.cost(cost), s.ppl, s) for s in scores if math.isfinite(s.cost(cost))]
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], color="#999999", label="variant")
    front = [s for s in pareto_front(scores, cost) if math.isfinite(s.cost(cost))]
    ax.plot([s.cost(cost) for s in front], [s.ppl for s in front], "-o", color=COLORS[0], label="Pareto front")
    if scores:
        best = min(s.ppl for s in scores)
        ax.axhline(best * (1 + tolerance), color=COLORS[1], ls="--", lw=1, label=f"best + {tolerance:.1%}")
    if chosen is not None and math.isfinite(chosen.cost(cost)):
        ax.scatter([chosen.cost(cost)], [chosen.ppl], s=220, facecolors="none", edgecolors="black", linewidths=2)
        ax.annotate("chosen", (chosen.cost(cost), chosen.ppl), textcoords="offset points", xytext=(8, 8))
    label = {"params": "trainable parameters", "memory": "peak memory (bytes)", "time": "seconds per token"}[cost]
    ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("validation perplexity")
    ax.set_title(f"Cost ({cost}) vs perplexity")
    ax.legend(fontsize=8)
    return _png(fig)


def loss_curves(records: list[TrialRecord], chosen: TrialRecord | None) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for rec in records:
        if rec.result is None or rec.cached_from is not None:
            continue
        is_chosen = chosen is not None and rec.number == chosen.number
        style = (
            {"color": "black", "lw": 2, "zorder": 3} if is_chosen else {"color": COLORS[0], "lw": 0.7, "alpha": 0.35}
        )
        if rec.result.loss_curve:
            ax1.plot(*zip(*rec.result.loss_curve, strict=True), **style)
        # start each validation line at the base model's loss (step 0), so a final-only eval is a line too
        start = [(0, rec.result.val_loss_before)] if rec.result.val_loss_before is not None else []
        val = start + [(s, v) for s, v in rec.result.val_curve if math.isfinite(v)]
        if len(val) > 1:
            ax2.plot(*zip(*val, strict=True), marker="o", ms=3, **style)
    for ax, title in ((ax1, "training loss per step"), (ax2, "validation loss")):
        ax.set_title(title + " (black: chosen)")
        ax.set_xlabel("optimizer step")
        ax.grid(True, alpha=0.3)
    return _png(fig)


def memory(records: list[TrialRecord]) -> bytes | None:
    pairs = []
    for rec in records:
        r = rec.result
        if r is None or rec.cached_from is not None or not r.peak_memory_bytes:
            continue
        est = r.estimated_memory_bytes
        if est:
            pairs.append((est / 2**20, r.peak_memory_bytes / 2**20, rec))
    if not pairs:
        return None
    fig, ax = _figure()
    ax.scatter([p[0] for p in pairs], [p[1] for p in pairs], color=COLORS[0])
    lo = min(min(p[0], p[1]) for p in pairs) * 0.9
    hi = max(max(p[0], p[1]) for p in pairs) * 1.1
    ax.plot([lo, hi], [lo, hi], "--", color="#666666", label="estimate = measured")
    ax.set_xlabel("estimated peak memory (MiB)")
    ax.set_ylabel("measured peak memory (MiB)")
    ax.set_title("Estimated vs measured memory per run")
    ax.legend(fontsize=8)
    return _png(fig)
