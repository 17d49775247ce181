"""The range test's curve: a few lines of ASCII for the terminal, or a PNG (matplotlib's Agg backend)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from loratune.measure.lr_probe import LRProbe

WIDTH, HEIGHT = 60, 10


def ascii_curve(
    lrs: Sequence[float], smoothed: Sequence[float], chosen: float, *, width: int = WIDTH, height: int = HEIGHT
) -> list[str]:
    """Smoothed loss (rows) against log10(LR) (columns), ``*`` per point, ``|`` at the chosen LR, and an LR axis
    with a label per decade. Losses above the range (the diverging tail) are drawn as ``^`` on the top row."""
    points = [(math.log10(lr), s) for lr, s in zip(lrs, smoothed, strict=False) if math.isfinite(s)]
    if len(points) < 2:
        return ["(too few finite points to draw)"]
    x_lo, x_hi = points[0][0], points[-1][0]
    x_lo, x_hi = min(x_lo, math.log10(chosen)), max(x_hi, math.log10(chosen))
    losses = [s for _, s in points]
    y_lo = min(losses)
    # Up to the starting loss plus the drop: the fall and the turn stay readable, the blow-up is clipped.
    y_hi = max(losses) if losses[0] <= y_lo else min(max(losses), losses[0] + (losses[0] - y_lo))
    if y_hi <= y_lo:
        y_hi = y_lo + 1e-9

    def col(x: float) -> int:
        return 0 if x_hi == x_lo else round((x - x_lo) / (x_hi - x_lo) * (width - 1))

    grid = [[" "] * width for _ in range(height)]
    mark = col(math.log10(chosen))
    for row in grid:
        row[mark] = "|"
    for x, s in points:
        r = (height - 1) - round((min(s, y_hi) - y_lo) / (y_hi - y_lo) * (height - 1))
        grid[r][col(x)] = "^" if s > y_hi else "*"
    label_w = max(len(f"{y_hi:.2f}"), len(f"{y_lo:.2f}"))
    lines = []
    for i, row in enumerate(grid):
        label = f"{y_hi:.2f}" if i == 0 else f"{y_lo:.2f}" if i == height - 1 else ""
        lines.append(f"{label:>{label_w}} ┤{''.join(row).rstrip()}")
    lines.append(" " * label_w + " └" + "─" * width)
    axis = [" "] * (width + 8)
    for decade in range(math.ceil(x_lo - 1e-9), math.floor(x_hi + 1e-9) + 1):
        text = f"1e{decade}"
        start = col(decade)
        if all(c == " " for c in axis[start : start + len(text) + 1]):
            axis[start : start + len(text)] = list(text)
    lines.append(" " * (label_w + 2) + "".join(axis).rstrip())
    lines.append(" " * (label_w + 2 + mark) + f"^ {chosen:.2e}")
    return lines


def save_png(probe: LRProbe, path: Path) -> None:
    """Loss per step (faint) and smoothed (line) against the LR on a log axis, the chosen LR marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    try:
        ax.plot(probe.lrs, probe.losses, color="0.75", linewidth=1, label="loss per step")
        ax.plot(probe.lrs, probe.smoothed, color="C0", linewidth=2, label="smoothed")
        ax.axvline(probe.lr, color="C3", linestyle="--", label=f"chosen {probe.lr:.2e}")
        ax.set_xscale("log")
        finite = [s for s in probe.smoothed if math.isfinite(s)]
        if finite:
            # From the lowest loss drawn to the start plus the drop: the diverging tail is cut, not the fall.
            lo, start = min(finite), finite[0]
            bottom = min([lo, *(x for x in probe.losses if math.isfinite(x))])
            ax.set_ylim(bottom - 0.02 * abs(bottom), start + max(start - lo, 0.1 * abs(lo)))
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss (nats)")
        ax.set_title("LR range test (Smith, arXiv:1506.01186)")
        ax.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
