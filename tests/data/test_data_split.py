"""The seeded train/validation split."""

from __future__ import annotations

import pytest

from loratune.data import split_train_val
from loratune.errors import DataError


def test_split_is_seeded_disjoint_and_complete() -> None:
    items = list(range(100))
    train, val = split_train_val(items, val_fraction=0.1, seed=0)
    assert (len(train), len(val)) == (90, 10)
    assert sorted(train + val) == items
    assert train == sorted(train) and val == sorted(val)  # both halves keep the source order
    assert split_train_val(items, val_fraction=0.1, seed=0) == (train, val)
    _, other = split_train_val(items, val_fraction=0.1, seed=1)
    assert other != val


def test_split_sizes_at_the_edges() -> None:
    assert split_train_val([], val_fraction=0.2) == ([], [])
    assert split_train_val(["a"], val_fraction=0.5) == (["a"], [])
    two = split_train_val(["a", "b"], val_fraction=0.01)
    assert (len(two[0]), len(two[1])) == (1, 1)  # at least one validation item
    ten = split_train_val(list(range(10)), val_fraction=0.95)
    assert (len(ten[0]), len(ten[1])) == (1, 9)  # never leaves training empty
    assert split_train_val([1, 2, 3], val_fraction=0.0) == ([1, 2, 3], [])


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_bad_fraction(fraction: float) -> None:
    with pytest.raises(DataError, match=f"validation fraction must be in \\[0, 1\\), got {fraction}"):
        split_train_val([1, 2, 3], val_fraction=fraction)
