"""Classification metrics over plain lists of label ids (no torch): accuracy and macro-F1.

Macro-F1 is the unweighted mean of each class's F1 = 2·P·R / (P + R) over the classes that occur in the
references or the predictions (scikit-learn's ``f1_score(average="macro")`` with its default labels);
a class never predicted has P = 0 and F1 = 0 (sklearn's ``zero_division=0``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ClsScores:
    loss: float
    accuracy: float
    f1: float
    n: int


def accuracy(predictions: Sequence[int], references: Sequence[int]) -> float:
    if not references:
        return 0.0
    return sum(int(p == r) for p, r in zip(predictions, references, strict=True)) / len(references)


def macro_f1(predictions: Sequence[int], references: Sequence[int]) -> float:
    classes = sorted(set(references) | set(predictions))
    if not classes:
        return 0.0
    total = 0.0
    for c in classes:
        tp = sum(1 for p, r in zip(predictions, references, strict=True) if p == c and r == c)
        fp = sum(1 for p, r in zip(predictions, references, strict=True) if p == c and r != c)
        fn = sum(1 for p, r in zip(predictions, references, strict=True) if p != c and r == c)
        denom = 2 * tp + fp + fn  # F1 = 2TP / (2TP + FP + FN), the same as 2PR/(P+R)
        total += 2 * tp / denom if denom else 0.0
    return total / len(classes)
