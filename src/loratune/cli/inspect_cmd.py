"""``loratune inspect MODEL``: every module LoRA can wrap, grouped by suffix, with warnings."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from loratune.anatomy.targets import anatomy_warnings
from loratune.anatomy.types import ROLES
from loratune.cli.common import JsonOpt, ModelArg, console, print_json, warn_lines, warning_fields
from loratune.models import load_anatomy, resolve_source
from loratune.units import fmt_count


def inspect(
    model: ModelArg,
    json_out: JsonOpt = False,
    embeddings: Annotated[bool, typer.Option("--embeddings", help="List embedding layers too.")] = False,
    full: Annotated[bool, typer.Option("--full", help="One row per module instead of one per suffix.")] = False,
) -> None:
    """Show the model's anatomy without loading weights: names, layers, roles, shapes."""
    anatomy = load_anatomy(resolve_source(model))
    mods = [m for m in anatomy.modules if embeddings or m.kind != "embedding"]
    warnings = anatomy_warnings(anatomy)
    if json_out:
        print_json(
            {
                "architecture": anatomy.architecture,
                "model_type": anatomy.model_type,
                "num_layers": anatomy.num_layers,
                "total_params": anatomy.total_params,
                "tied_embeddings": anatomy.tied_embeddings,
                "modules": [
                    {
                        k: v
                        for k, v in asdict(m).items()
                        if k in ("name", "layer", "role", "in_features", "out_features", "kind")
                    }
                    for m in mods
                ],
                **warning_fields(warnings),
            }
        )
        return
    console.print(
        f"[bold]{anatomy.source}[/] — {anatomy.architecture} ({anatomy.model_type}), "
        f"{anatomy.num_layers} layers, {fmt_count(anatomy.total_params)} parameters"
    )
    table = Table(show_lines=False)
    if full:
        # Module names are what users copy into --targets: folded when narrow, never cut with "…".
        table.add_column("module", overflow="fold")
        for col in ("layer", "role", "in → out", "kind"):
            table.add_column(col, no_wrap=True)
        for m in mods:
            table.add_row(
                m.name, "" if m.layer is None else str(m.layer), m.role, f"{m.in_features} → {m.out_features}", m.kind
            )
    else:
        for col in ("suffix", "role", "count", "in → out", "kind", "layers"):
            table.add_column(col, no_wrap=col in ("suffix", "role", "in → out"))
        table.add_column("example", overflow="fold")
        groups: dict[tuple[str, str, int, int, str], list] = {}
        for m in mods:
            groups.setdefault((m.suffix, m.role, m.in_features, m.out_features, m.kind), []).append(m)
        order = {r: i for i, r in enumerate(ROLES)}
        for (suffix, role, fin, fout, kind), ms in sorted(groups.items(), key=lambda kv: (order[kv[0][1]], kv[0][0])):
            layers = sorted({m.layer for m in ms if m.layer is not None})
            span = f"{layers[0]}-{layers[-1]}" if len(layers) > 1 else (str(layers[0]) if layers else "")
            table.add_row(suffix, role, str(len(ms)), f"{fin} → {fout}", kind, span, ms[0].name)
    console.print(table)
    per_layer = anatomy.roles_per_layer()
    if per_layer:
        roles = sorted({r for rs in per_layer.values() for r in rs}, key=lambda r: ROLES.index(r))
        console.print(f"{len(per_layer)} layers, each with roles: {', '.join(roles)}")
    warn_lines(warnings)
