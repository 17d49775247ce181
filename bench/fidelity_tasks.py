"""The two tasks of bench/fidelity.py, written as JSONL at first use (never committed):

- ``qa``: the demo's stdlib QA ("What does `json.dumps` do?" → its docstring's first sentence), a subset;
- ``module``: classification as generation, built here from the same docstrings turned around: the
  first sentence of a public function's docstring → the name of the module it belongs to, over the
  ``MODULES`` with the most such sentences, balanced. The answer is one or two tokens of a closed label
  set, so the loss is a classifier's log-loss rather than a sentence's.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

from loratune.paths import write_atomic

MODULES = 10  # label classes: the modules with the most usable docstrings
SEED = 0


def qa_file(work: Path, n: int) -> Path:
    """The first ``n`` examples of the demo QA set (itself a seeded sample)."""
    from loratune.data.demo import demo_qa_path

    path = work / f"qa-{n}.jsonl"
    if not path.is_file():
        lines = demo_qa_path().read_text().splitlines()[:n]
        write_atomic(path, "\n".join(lines) + "\n")
    return path


def module_file(work: Path, n: int) -> Path:
    """``n`` examples (balanced over ``MODULES`` labels, seeded) of sentence → module name."""
    from loratune.data.demo import qa_pairs

    path = work / f"module-{n}.jsonl"
    if path.is_file():
        return path
    by_module: dict[str, list[str]] = defaultdict(list)
    for pair in qa_pairs():
        qualified = pair["question"].split("`")[1]  # "What does `json.dumps` do?"
        module = qualified.split(".")[0]
        by_module[module].append(pair["answer"])
    labels = sorted(by_module, key=lambda m: (-len(by_module[m]), m))[:MODULES]
    rng = random.Random(SEED)
    per = -(-n // len(labels))  # ceil: then cut to n after the shuffle
    rows = []
    for label in labels:
        sentences = sorted(by_module[label])
        rng.shuffle(sentences)
        rows += [{"question": f"Which Python standard-library module is this from? \"{s}\"", "answer": label}
                 for s in sentences[:per]]  # fmt: skip
    rng.shuffle(rows)
    rows = rows[:n]
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))
    return path
