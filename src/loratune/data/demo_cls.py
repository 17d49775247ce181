"""Demo classification data: is a standard-library docstring's first sentence about a class or a function?

The seed's first rank criterion is about very simple classification ("sentiment positive/negative,
yes/no → r = 1–4"); this is such a task, labelled by a fact Python knows (``inspect.isclass``), on text
already on this machine: the first sentences of the docstrings that ``demo`` builds its QA set from
(``data/demo.py``). Built at first use and cached like the QA set (the text is Python's, never
committed); balanced by sampling the same number of each class with a fixed seed.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Iterator
from pathlib import Path

from loratune.data.demo import QA_MODULES, SEED, _cached, _import, _public_members, first_sentence
from loratune.errors import DataError

DEMO_CLS_NAME = "demo-cls"
PER_CLASS = 300


def demo_cls_path(per_class: int = PER_CLASS) -> Path:
    """A JSONL file of ``2 · per_class`` {"text", "label"} rows, labels ``class`` and ``function``."""
    return _cached(f"stdlib-cls-{per_class}", lambda: _balanced(list(docstring_kinds()), per_class))


def docstring_kinds() -> Iterator[dict[str, str]]:
    """Every usable (first sentence, kind) from QA_MODULES in sorted order; methods count as functions."""
    seen: set[str] = set()
    for module_name in sorted(QA_MODULES):
        try:
            module = _import(module_name)
        except ImportError:
            continue
        real_name = module.__name__
        for _, obj in _public_members(module, real_name):
            targets = [(obj, "class" if inspect.isclass(obj) else "function")]
            if inspect.isclass(obj):
                targets += [(o, "function") for _, o in _public_members(obj, real_name) if not inspect.isclass(o)]
            for target, kind in targets:
                sentence = first_sentence(target.__doc__)
                if sentence is None or sentence in seen:
                    continue
                seen.add(sentence)
                yield {"text": sentence, "label": kind}


def _balanced(rows: list[dict[str, str]], per_class: int) -> list[dict[str, str]]:
    rng = random.Random(SEED)
    out: list[dict[str, str]] = []
    for kind in ("class", "function"):
        pool = [r for r in rows if r["label"] == kind]
        if per_class < 1 or per_class > len(pool):
            raise DataError(
                f"cannot build {per_class} demo '{kind}' rows: this Python yields {len(pool)}",
                f"ask for between 1 and {len(pool)} per class",
            )
        out += rng.sample(pool, per_class)
    rng.shuffle(out)
    return out
