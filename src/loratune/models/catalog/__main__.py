"""Regenerate the anatomy snapshots of every catalog model: ``python -m loratune.models.catalog``.

Run after adding a catalog entry or upgrading transformers; tests fail until the snapshots match.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from loratune.anatomy.snapshot import to_snapshot
from loratune.models.catalog import catalog_config, catalog_names
from loratune.models.skeleton import anatomy_from_config
from loratune.paths import write_atomic


def main() -> None:
    out_dir = Path(__file__).parent / "anatomy"
    out_dir.mkdir(exist_ok=True)
    for name in catalog_names():
        anatomy = anatomy_from_config(catalog_config(name), source=name)
        path = out_dir / f"{name}.json"
        write_atomic(path, json.dumps(to_snapshot(anatomy), indent=1) + "\n")
        print(f"{name}: {len(anatomy.modules)} modules, {anatomy.total_params:,} params", file=sys.stderr)


if __name__ == "__main__":
    main()
