"""``loratune eval MODEL [--adapter DIR] --data FILE``: perplexity, and exact match / token F1 for QA."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from loratune.cli.common import JsonOpt, ModelArg, console, print_json
from loratune.errors import ConfigError


def evaluate(
    model: ModelArg,
    data: Annotated[str, typer.Option("--data", help="Data file (same formats as train) or 'demo'.")],
    adapter: Annotated[
        Path | None, typer.Option("--adapter", help="A PEFT adapter directory (from `loratune train`).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="auto, prompt-response, alpaca, chat or text.")] = "auto",
    prompt_column: Annotated[str, typer.Option("--prompt-column", help="Prompt column name.")] = "prompt",
    response_column: Annotated[str, typer.Option("--response-column", help="Response column name.")] = "response",
    split: Annotated[
        str,
        typer.Option("--split", help="Which part of --data: 'val' (the split `train` held out, same seed), or 'all'."),
    ] = "val",
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="As given to train.")] = 0.1,
    seed: Annotated[int, typer.Option("--seed", help="As given to train (the split's seed).")] = 0,
    qa: Annotated[
        bool, typer.Option("--qa/--no-qa", help="Greedy-decode answers and score exact match / token F1.")
    ] = True,
    qa_limit: Annotated[int, typer.Option("--qa-limit", help="Examples to decode (decoding is the slow part).")] = 50,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Examples per batch for perplexity.")] = 8,
    max_length: Annotated[int, typer.Option("--max-length", help="Tokens per example.")] = 512,
    dtype: Annotated[str, typer.Option("--dtype", help="auto, bf16 or fp32.")] = "auto",
    allow_pickle: Annotated[
        bool, typer.Option("--allow-pickle", help="Allow pickle weight files (can run code).")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Score a model (optionally with an adapter) on data: perplexity; EM and token F1 of greedy answers."""
    from loratune.trial.data_prep import prepare, read
    from loratune.trial.evaluate import mean_loss, qa_scores, safe_exp
    from loratune.trial.runner import TrialRunner, quiet_libraries
    from loratune.trial.speed import choose_attention, use_attention

    quiet_libraries()
    if split not in ("val", "all"):
        raise ConfigError(f"unknown --split {split!r}", "use val or all")
    raw = read(data, format=fmt, prompt_column=prompt_column, response_column=response_column)
    runner = TrialRunner(model, compute_dtype=dtype, allow_pickle=allow_pickle)
    prepared = prepare(
        raw, runner.tokenizer, max_length=max_length, val_fraction=val_fraction if split == "val" else 0.0, seed=seed
    )
    examples = prepared.val if split == "val" and prepared.val else prepared.train + prepared.val
    scored = runner.model
    if adapter is not None:
        scored = _with_adapter(runner.model, adapter)
    longest = min(max_length, max((len(ex.input_ids) for ex in examples), default=1))
    try:
        # The attention kernel `train` picks for these lengths, so the loss matches the one it reported.
        with use_attention(runner.model, choose_attention(longest, runner.device)):
            loss = mean_loss(
                scored, examples, pad_id=runner.tokenizer.pad_token_id, batch_size=batch_size, max_length=max_length
            )
        is_qa = any(ex.labels[0] == -100 for ex in examples)  # prompt tokens masked → there is an answer to decode
        scores = qa_scores(scored, runner.tokenizer, examples, limit=qa_limit) if qa and is_qa else None
    finally:
        if adapter is not None:
            scored.unload()
    out = {
        "model": runner.label,
        "adapter": str(adapter) if adapter else None,
        "examples": len(examples),
        "loss": loss,
        "perplexity": safe_exp(loss),
        "exact_match": scores.exact_match if scores else None,
        "token_f1": scores.token_f1 if scores else None,
        "qa_examples": scores.n if scores else 0,
    }
    if json_out:
        print_json(out)
        return
    table = Table("metric", "value")
    table.add_row("examples", str(len(examples)))
    table.add_row("loss (nats/token)", f"{loss:.4f}")
    table.add_row("perplexity", f"{safe_exp(loss):.3f}")
    if scores:
        table.add_row(f"exact match ({scores.n} greedy answers)", f"{100 * scores.exact_match:.1f} %")
        table.add_row("token F1", f"{100 * scores.token_f1:.1f} %")
    console.print(f"[bold]{runner.label}[/]" + (f" + {adapter}" if adapter else ""), highlight=False)
    console.print(table)
    if scores:
        for pred, ref in scores.samples:
            console.print(f"  predicted: {pred[:100]!r}\n  reference: {ref[:100]!r}", highlight=False)


def _with_adapter(base: object, adapter: Path) -> object:
    from peft import PeftModel

    if not (adapter / "adapter_config.json").is_file():
        raise ConfigError(
            f"{adapter} is not a PEFT adapter (no adapter_config.json)", "pass the --out directory of `loratune train`"
        )
    return PeftModel.from_pretrained(base, str(adapter), is_trainable=False)
