"""Training data: read files, recognise their format, tokenize with loss masks, split, demo sets.

Pure Python plus a tokenizer object: no torch here (batching into tensors lives in ``trial/``).
"""

from __future__ import annotations

from loratune.data.demo import demo_qa_path, demo_reference_path, resolve_data_arg
from loratune.data.formats import load_examples
from loratune.data.split import check_val_fraction, split_train_val
from loratune.data.tokenize import describe_stats, tokenize_examples
from loratune.data.types import FORMATS, IGNORE_INDEX, Example, TokenizedData, TokenizedExample, TokenStats

__all__ = [
    "FORMATS",
    "IGNORE_INDEX",
    "Example",
    "TokenStats",
    "TokenizedData",
    "TokenizedExample",
    "check_val_fraction",
    "demo_qa_path",
    "demo_reference_path",
    "describe_stats",
    "load_examples",
    "resolve_data_arg",
    "split_train_val",
    "tokenize_examples",
]
