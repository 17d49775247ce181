"""``report.html``: one self-contained page (PNGs inlined as base64, no scripts, no external assets).

Every piece of text that comes from the user, the data or a trial goes through ``html.escape``
(``_e``): a dataset line or an error message can hold ``<script>``.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

from loratune.report import plots
from loratune.report.load import StudyData
from loratune.units import fmt_bytes

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#222;
padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.82rem;width:100%}th,td{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}tr.chosen{background:#fff6d5;font-weight:600}
tr.pruned{color:#888}tr.failed{color:#b00}pre{background:#f7f7f7;padding:.8rem;overflow:auto;font-size:.8rem}
.box{background:#eef6ee;border:1px solid #9c9;padding:.8rem 1rem;border-radius:6px}
img{max-width:100%;border:1px solid #eee;margin:.5rem 0}.muted{color:#666;font-size:.85rem}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(v: float | None, fmt: str = "{:.4f}") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return fmt.format(v)


def build_figures(data: StudyData) -> dict[str, bytes]:
    chosen = data.choice.chosen if data.choice else None
    cost = data.options.get("cost", "params")
    figs: dict[str, bytes] = {}
    if data.scores:
        figs["ppl_vs_rank.png"] = plots.ppl_vs_rank(data.scores, chosen)
        figs["pareto.png"] = plots.pareto(data.scores, chosen, cost, data.options.get("tolerance", 0.01))
    if data.records:
        figs["loss_curves.png"] = plots.loss_curves(data.records, chosen.best if chosen else None)
        mem = plots.memory(data.records)
        if mem is not None:
            figs["memory.png"] = mem
    return figs


def render(data: StudyData, figures: dict[str, bytes]) -> str:
    o = data.options
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # No scripts, no fetches: the page can only show its own text, CSS and inlined images.
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
        f"<title>loratune report — {_e(o.get('model', data.directory.name))}</title><style>{CSS}</style></head><body>",
        f"<h1>loratune search report: {_e(o.get('model', '?'))}</h1>",
        f'<p class="muted">strategy {_e(o.get("strategy", "?"))} · data {_e(o.get("data", "?"))} · '
        f"{_e(o.get('steps', '?'))} steps × batch {_e(o.get('batch_size', '?'))} per run · "
        f"{len(data.records)} trials · study {_e(data.directory)}</p>",
    ]
    parts += _chosen_section(data)
    parts += _stages_section(data)
    parts += _ladder_section(data)
    parts += _sweeps_section(data)
    for name, title in (
        ("ppl_vs_rank.png", "Perplexity vs rank"),
        ("pareto.png", "Pareto front: cost vs perplexity"),
        ("loss_curves.png", "Loss curves"),
        ("memory.png", "Estimated vs measured memory"),
    ):
        if name in figures:
            b64 = base64.b64encode(figures[name]).decode("ascii")
            parts.append(f'<h2>{_e(title)}</h2><img alt="{_e(title)}" src="data:image/png;base64,{b64}">')
    parts += _trials_section(data)
    parts.append('<p class="muted">written by loratune report; every number comes from the study\'s trials.</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _chosen_section(data: StudyData) -> list[str]:
    if data.choice is None:
        return ["<h2>Chosen configuration</h2><p>No variant finished with a finite validation loss yet.</p>"]
    c = data.choice.chosen
    config = data.best.get("config") or {"variant": c.variant.to_dict()}
    return [
        "<h2>Chosen configuration</h2>",
        f'<div class="box"><p><b>{_e(c.variant.label())}</b> at learning rate {_e(f"{c.learning_rate:g}")}: '
        f"validation perplexity {_e(_num(c.ppl))}.</p><p>Why: {_e(data.choice.reason())}</p></div>",
        f"<pre>{_e(json.dumps(config, indent=2, default=str))}</pre>",
    ]


def _stages_section(data: StudyData) -> list[str]:
    stages = data.best.get("stages") or []
    if not stages:
        return []
    rows = "".join(
        f'<tr><td class="l">{_e(s["name"])}</td><td class="l">{_e(", ".join(s["tried"]))}</td>'
        f'<td class="l">{_e(s.get("winner") or "—")}</td><td class="l">{_e(s.get("note", ""))}</td></tr>'
        for s in stages
    )
    return [
        "<h2>Stages</h2>",
        '<table><tr><th class="l">stage</th><th class="l">tried</th>'
        '<th class="l">winner</th><th class="l">rule</th></tr>',
        rows,
        "</table>",
    ]


def _ladder_section(data: StudyData) -> list[str]:
    """Each finalist's perplexity (at its best LR) per rung: did the short runs' ranking hold at length?"""
    if not data.rungs:
        return []
    from loratune.search.ladder import across_lengths

    levels = [data.scores, *(r.scores for r in data.rungs)]
    variants = [s.variant for s in data.rungs[0].scores]
    steps = data.options.get("steps", "?")
    head = f"<tr><th class='l'>variant</th><th>{_e(steps)} steps (search)</th>" + "".join(
        f"<th>{_e(r.steps)} steps</th>" for r in data.rungs
    )
    ladder = data.best.get("ladder")
    challenger = ladder.get("challenger") if isinstance(ladder, dict) else None  # a label (search.ladder)
    rows = []
    for v in variants:
        cells = across_lengths(v, levels)
        chosen = data.choice is not None and data.choice.chosen.variant == v
        name = v.label() + (" (capacity challenger)" if v.label() == challenger else "")
        rows.append(
            f'<tr class="{"chosen" if chosen else ""}"><td class="l">{_e(name)}</td>'
            + "".join(f"<td>{_e(_ladder_cell(c))}</td>" for c in cells)
            + "</tr>"
        )
    short = data.short_choice.chosen.variant if data.short_choice else None
    held = data.choice is not None and short == data.choice.chosen.variant
    verdict = (
        "The ranking held: the top rung picked what the short runs picked."
        if held
        else f"The ranking changed: the short runs picked {short.label() if short else '—'}, the top rung "
        f"{data.choice.chosen.variant.label() if data.choice else '—'}."
    )
    return [
        "<h2>Fidelity ladder</h2>",
        f"<p>The search's finalists re-run at growing lengths, the LR re-tuned at each (cells: validation "
        f"perplexity at the best LR). The capacity challenger is the best finalist at the space's highest rank "
        f"on every linear layer: short runs cannot show what capacity buys. {_e(verdict)}</p>",
        "<table>",
        head + "</tr>",
        *rows,
        "</table>",
    ]


def _ladder_cell(s: Any) -> str:
    return "—" if s is None else f"{_num(s.ppl)} @ {s.learning_rate:g}"


def _sweeps_section(data: StudyData) -> list[str]:
    """Whether each variant's LR sweep bracketed its best LR (search/lr.py::lr_edge decides)."""
    from loratune.search.ladder import sweep_edges
    from loratune.search.lr import LRPlan

    cap = int(data.options.get("lr_runs", 1) or 1)
    levels = [data.scores, *(r.scores for r in data.rungs)]
    names = ["search", *(f"{r.steps} steps" for r in data.rungs)]
    rows, flagged = [], 0
    for label, scores, edges in zip(names, levels, sweep_edges(levels, LRPlan(max_runs=cap)), strict=True):
        for s in scores:
            tried = sorted(s.tried)
            edge = edges[s.variant]
            flagged += edge is not None
            status = {
                None: "not swept" if len(tried) < 2 else "bracketed",
                "cap": f"best LR at the edge: the cap of {cap} runs was hit (raise --lr-runs)",
                "bound": "best LR at the LR bound",
            }[edge]
            rows.append(
                f'<tr class="{"failed" if edge else ""}"><td class="l">{_e(label)}</td>'
                f'<td class="l">{_e(s.variant.label())}</td><td class="l">{_e(", ".join(f"{x:g}" for x in tried))}</td>'
                f"<td>{_e(f'{s.learning_rate:g}')}</td><td class='l'>{_e(status)}</td></tr>"
            )
    if not rows:
        return []
    return [
        "<h2>Learning-rate sweeps</h2>",
        f"<p>A variant's LR is tuned only when its best LR has a worse run on each side; {flagged} sweep(s) "
        "ended at an edge.</p>",
        "<table><tr><th class='l'>where</th><th class='l'>variant</th><th class='l'>LRs run</th><th>best</th>"
        "<th class='l'>sweep</th></tr>",
        *rows,
        "</table>",
    ]


def _trials_section(data: StudyData) -> list[str]:
    chosen_number = data.choice.chosen.best.number if data.choice else None
    # a classifier's study: validation accuracy and macro-F1 before/after as well
    is_cls = any(rec.result is not None and rec.result.val_accuracy_after is not None for rec in data.records)
    cls_head = "<th>val acc before</th><th>val acc after</th><th>val F1 after</th>" if is_cls else ""
    head = (
        "<tr><th>#</th><th class='l'>stage</th><th class='l'>variant</th><th>lr</th><th class='l'>state</th>"
        f"<th>val ppl before</th><th>val ppl after</th>{cls_head}<th>ref ppl after</th><th>trainable</th>"
        "<th>est. memory</th><th>peak memory</th><th>seconds</th><th>tokens</th><th class='l'>note</th></tr>"
    )
    rows = []
    for rec in data.records:
        r = rec.result
        state = rec.state.lower()
        cls = "chosen" if rec.number == chosen_number else ("pruned" if state == "pruned" else "")
        if r is not None and r.status in ("failed", "diverged"):
            cls = "failed"
        note = r.message if r is not None else ""
        if rec.cached_from is not None:
            note = f"same config as trial {rec.cached_from} (not trained again)" + (f"; {note}" if note else "")
        est = r.estimated_memory_bytes if r is not None else None
        rows.append(
            f'<tr class="{cls}"><td>{rec.number}</td><td class="l">{_e(rec.stage)}</td>'
            f'<td class="l">{_e(rec.variant.label() if rec.variant else "—")}</td>'
            f"<td>{_e(_num(rec.learning_rate, '{:g}'))}</td><td class='l'>{_e(r.status if r else state)}</td>"
            f"<td>{_e(_num(r.val_ppl_before if r else None))}</td><td>{_e(_num(r.val_ppl_after if r else None))}</td>"
            + (_cls_cells(r) if is_cls else "")
            + f"<td>{_e(_num(r.ref_ppl_after if r else None))}</td>"
            f"<td>{_e(f'{r.trainable_params:,}' if r else '—')}</td>"
            f"<td>{_e(fmt_bytes(est) if est else '—')}</td>"
            f"<td>{_e(fmt_bytes(r.peak_memory_bytes) if r and r.peak_memory_bytes else '—')}</td>"
            f"<td>{_e(_num(r.wall_seconds if r else None, '{:.1f}'))}</td>"
            f"<td>{_e(f'{r.train_tokens:,}' if r else '—')}</td>"
            f'<td class="l">{_e(note)}</td></tr>'
        )
    return ["<h2>Every trial</h2>", "<table>", head, *rows, "</table>"]


def _cls_cells(r: Any) -> str:
    vals = (r.val_accuracy_before, r.val_accuracy_after, r.val_f1_after) if r is not None else (None,) * 3
    return "".join(f"<td>{_e(_num(v, '{:.3f}'))}</td>" for v in vals)


def write_report(data: StudyData, out_dir: Path) -> list[Path]:
    """``report.html`` plus the PNGs beside it; returns the paths written. A folder that is a file, lies
    under one or cannot be written is a ConfigError before anything is drawn or written."""
    from loratune.outputs import check_output_dir
    from loratune.paths import write_atomic

    out_dir = Path(out_dir)
    check_output_dir(out_dir)
    figures = build_figures(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, png in figures.items():
        path = out_dir / name
        write_atomic(path, png)
        written.append(path)
    page = out_dir / "report.html"
    write_atomic(page, render(data, figures))
    return [page, *written]
