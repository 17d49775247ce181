"""A search with local worker processes on the synthetic objective (no training), as a subprocess the
tests can kill: ``python pool_driver.py OUT STORAGE WORKERS STRATEGY [--resume]``.

``make`` is the workers' factory (``LORATUNE_WORKER_FACTORY=…/pool_driver.py:make``). Each run appends
"label lr pid" to ``$LORATUNE_TEST_RANLOG`` when it *starts*, so a test sees every run begun, killed ones
included; ``$LORATUNE_TEST_SLEEP`` is the seconds per evaluation (4 per run), ``$LORATUNE_TEST_LOAD_SLEEP``
the seconds a worker takes to "load its model"; ``$LORATUNE_TEST_WAIT_FOR_PEER=1`` holds the coordinator's
first run until a worker process has begun one."""

from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import SyntheticObjective  # noqa: E402

from loratune.search import SearchConfig, SearchInputs, Variant  # noqa: E402
from loratune.search.space import RunConfig  # noqa: E402

# The pool's searches, most without the fidelity ladder (its own tests: test_ladder.py, and the two below).
CONFIGS = {
    "staged": SearchConfig(model="smollm2-135m", max_r=32, export="none", finalists=0),
    "optuna": SearchConfig(model="smollm2-135m", max_r=32, export="none", strategy="optuna", trials=10, finalists=0),
    # one LR per variant: a rank step is one run, so a second worker is idle and tries two ranks up
    "ahead": SearchConfig(model="smollm2-135m", max_r=128, lr_runs=1, export="none", finalists=0),
    "ladder": SearchConfig(model="smollm2-135m", max_r=32, export="none"),  # with its ladder
    "optuna-ladder": SearchConfig(model="smollm2-135m", max_r=32, export="none", strategy="optuna", trials=10),
}


class LoggedObjective(SyntheticObjective):
    wait_for_peer = False  # the first run ends only once another process has begun one (a fixed overlap)

    def __call__(self, config: RunConfig, on_eval: Any) -> Any:
        path = os.environ.get("LORATUNE_TEST_RANLOG")
        if path:
            with open(path, "a") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                f.write(f"{config.variant.label()}|{config.learning_rate:g}|{self.steps}|{os.getpid()}\n")
        result = super().__call__(config, on_eval)
        if path and self.wait_for_peer:
            self.wait_for_peer = False
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and all(
                line.endswith(f"|{os.getpid()}") for line in Path(path).read_text().splitlines()
            ):
                time.sleep(0.05)
        return result


def inputs(anatomy: Any = None) -> SearchInputs:
    return SearchInputs(
        model="smollm2-135m",
        anatomy=anatomy,
        train=[[1, 2, 3]] * 100,
        val=[[1, 2]] * 8,
        reference=[],
        data_digest="synthetic",
        baseline=Variant(8, 16.0, "attention"),
        recommended_lr=2e-4,
    )


def make(config: SearchConfig) -> tuple[SearchInputs, Any]:
    time.sleep(float(os.environ.get("LORATUNE_TEST_LOAD_SLEEP", "0")))  # a worker's model load, when a test asks
    return inputs(), LoggedObjective(sleep=float(os.environ.get("LORATUNE_TEST_SLEEP", "0")))


def main() -> None:
    from loratune.models import load_anatomy, resolve_source
    from loratune.search import run_search

    out, storage, workers, strategy = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    anatomy = load_anatomy(resolve_source("smollm2-135m"))  # a skeleton: no weights load
    objective = LoggedObjective(sleep=float(os.environ.get("LORATUNE_TEST_SLEEP", "0")))
    objective.wait_for_peer = os.environ.get("LORATUNE_TEST_WAIT_FOR_PEER") == "1"
    result = run_search(
        CONFIGS[strategy],
        out,
        storage=None if storage == "-" else storage,
        inputs=inputs(anatomy),
        objective=objective,
        workers=workers,
        worker_factory=f"{Path(__file__).resolve()}:make",
    )
    print(f"chosen {result.choice.chosen.variant.label()} lr {result.choice.chosen.learning_rate:g}", flush=True)


if __name__ == "__main__":
    from loratune.errors import LoratuneError

    try:
        main()
    except LoratuneError as e:
        print(f"error: {e.one_line()}", file=sys.stderr)
        sys.exit(2)
