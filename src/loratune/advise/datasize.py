"""``--data FILE`` → number of examples and an approximate token count (no tokenizer needed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loratune.errors import DataError

CHARS_PER_TOKEN = 4  # rough English BPE average; a tokenizer would give the exact count


@dataclass(frozen=True)
class DataCount:
    examples: int
    approx_tokens: int
    note: str


def count_data(path: str | Path) -> DataCount:
    from loratune.data import load_examples, resolve_data_arg

    resolved = resolve_data_arg(str(path))
    try:
        examples = load_examples(resolved)
    except RecursionError:  # json's decoder on "[[[[…": a hostile file, not a dataset
        raise DataError(f"{path} is nested too deeply to be a dataset", "give one example per line (JSONL)") from None
    if not examples:
        raise DataError(f"{path} holds no examples", "give a file with at least one example")
    chars = 0
    for ex in examples:
        if ex.messages:
            chars += sum(len(str(m.get("content", ""))) for m in ex.messages)
        else:
            chars += len(ex.prompt) + len(ex.response)
    tokens = max(1, chars // CHARS_PER_TOKEN)
    return DataCount(
        len(examples),
        tokens,
        f"counted from {resolved.name}: {chars:,} characters / {CHARS_PER_TOKEN} ≈ tokens (no tokenizer)",
    )
