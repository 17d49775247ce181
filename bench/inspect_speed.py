"""How fast are `inspect` and `budget` of llama-2-70b from the catalog? (issue: well under a second)

Measures, in one run on this machine:
- the whole CLI process (`loratune inspect llama-2-70b --json`, `loratune budget llama-2-70b …`), wall time;
- the library calls alone (load_anatomy + count_params), in-process;
- for comparison, the path a tool without snapshots takes: import torch + transformers and build
  the model on the meta device.
Writes bench/results/inspect_speed.json. Run: `.venv/bin/python bench/inspect_speed.py`.
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "inspect_speed.json"
REPEATS = 5


def wall(cmd: list[str]) -> float:
    best = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        best.append(time.perf_counter() - t)
    return statistics.median(best)


def main() -> None:
    cli = [sys.executable, "-m", "loratune.cli.app"]
    inspect_s = wall([*cli, "inspect", "llama-2-70b", "--json"])
    budget_s = wall(
        [*cli, "budget", "llama-2-70b", "--r", "16", "--targets", "all-linear", "--method", "dora", "--json"]
    )

    lib = (
        "import time; t=time.perf_counter();"
        "from loratune.models import load_anatomy, resolve_source;"
        "from loratune.anatomy.targets import TargetSpec;"
        "from loratune.budget import AdapterSpec, count_params;"
        "a=load_anatomy(resolve_source('llama-2-70b'));"
        "b=count_params(a, AdapterSpec(TargetSpec('all-linear'), r=16, method='dora'));"
        "print(time.perf_counter()-t, b.trainable_params)"
    )
    lib_runs = [
        subprocess.run([sys.executable, "-c", lib], capture_output=True, text=True, check=True).stdout.split()
        for _ in range(REPEATS)
    ]
    library_s = statistics.median(float(r[0]) for r in lib_runs)
    trainable = int(lib_runs[0][1])

    meta = (
        "import time; t=time.perf_counter();"
        "from loratune.models import build_meta_model, read_config, resolve_source;"
        "from loratune.anatomy.extract import anatomy_from_model;"
        "m=build_meta_model(read_config(resolve_source('llama-2-70b')));"
        "anatomy_from_model(m, source='x'); print(time.perf_counter()-t)"
    )
    meta_s = statistics.median(
        float(subprocess.run([sys.executable, "-c", meta], capture_output=True, text=True, check=True).stdout)
        for _ in range(3)
    )
    result = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "model": "llama-2-70b",
        "repeats": REPEATS,
        "cli_inspect_seconds": round(inspect_s, 3),
        "cli_budget_seconds": round(budget_s, 3),
        "library_seconds": round(library_s, 4),
        "meta_build_seconds": round(meta_s, 3),
        "snapshot_speedup_vs_meta_build": round(meta_s / library_s, 1),
        "budget_trainable_params": trainable,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(RESULTS)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
