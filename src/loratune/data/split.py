"""A seeded, deterministic train/validation split."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

from loratune.errors import DataError

T = TypeVar("T")


def split_train_val(items: Sequence[T], *, val_fraction: float = 0.1, seed: int = 0) -> tuple[list[T], list[T]]:
    """Shuffle indices with ``seed`` and cut off ``val_fraction`` (at least one item when ``len >= 2``).

    Both halves keep the source order, so the split of a file does not depend on anything but the seed.
    """
    check_val_fraction(val_fraction)
    n = len(items)
    if n < 2 or val_fraction == 0.0:
        return list(items), []
    n_val = min(n - 1, max(1, round(n * val_fraction)))
    order = list(range(n))
    random.Random(seed).shuffle(order)
    val_idx = set(order[:n_val])
    train = [x for i, x in enumerate(items) if i not in val_idx]
    val = [x for i, x in enumerate(items) if i in val_idx]
    return train, val


def check_val_fraction(val_fraction: float, *, allow_zero: bool = True) -> None:
    """Raise unless ``val_fraction`` is in [0, 1) — (0, 1) with ``allow_zero=False``, as ``--val-fraction``
    is (a run needs validation rows to measure anything). Cheap: the CLI calls it before loading a model."""
    low_ok = val_fraction >= 0.0 if allow_zero else val_fraction > 0.0
    if isinstance(val_fraction, bool) or not (low_ok and val_fraction < 1.0):
        span = "[0, 1)" if allow_zero else "(0, 1)"
        raise DataError(
            f"--val-fraction: the validation fraction must be in {span}, got {val_fraction}",
            "pass e.g. --val-fraction 0.1, or --val-data FILE",
        )
