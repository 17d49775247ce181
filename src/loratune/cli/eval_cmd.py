"""``loratune eval MODEL [--adapter DIR] --data FILE``: perplexity, and exact match / token F1 for QA."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from loratune.cli.common import JsonOpt, ModelArg, console, print_json
from loratune.data.types import IGNORE_INDEX
from loratune.errors import ConfigError
from loratune.trial.device import DEVICE_HELP, QUANT_HELP
from loratune.trial.types import MAX_SEED


def evaluate(
    model: ModelArg,
    data: Annotated[str, typer.Option("--data", help="Data file (same formats as train) or 'demo'.")],
    adapter: Annotated[
        Path | None, typer.Option("--adapter", help="A PEFT adapter directory (from `loratune train`).")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="auto, prompt-response, alpaca, chat, text or classification.")
    ] = "auto",
    task_type: Annotated[
        str, typer.Option("--task-type", help="auto (from the data), causal-lm or seq-cls (a classifier).")
    ] = "auto",
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
    dtype: Annotated[str, typer.Option("--dtype", help="auto, bf16, fp16 (CUDA) or fp32.")] = "auto",
    device: Annotated[str, typer.Option("--device", help=DEVICE_HELP)] = "auto",
    quant: Annotated[
        str | None,
        typer.Option("--quant", help=QUANT_HELP + " Default: as the adapter's metrics.json records, else none."),
    ] = None,
    allow_pickle: Annotated[
        bool, typer.Option("--allow-pickle", help="Allow pickle weight files (can run code).")
    ] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bars.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Score a model (optionally with an adapter) on data: perplexity; EM and token F1 of greedy answers."""
    from loratune.data import check_val_fraction
    from loratune.models import resolve_source
    from loratune.models.quantized import check_quant, recorded_quant
    from loratune.trial.adapter_io import check_adapter_dir, read_metrics, recorded_attention
    from loratune.trial.data_prep import prepare, read
    from loratune.trial.device import check_device_syntax, describe, resolve_device
    from loratune.trial.precision import check_compute_dtype, resolve_compute_dtype

    # ---- everything that can be checked without torch, so a typo fails in a fraction of a second
    check_device_syntax(device)
    if quant is not None:
        check_quant(quant)
    if split not in ("val", "all"):
        raise ConfigError(f"unknown --split {split!r}", "use val or all")
    check_val_fraction(val_fraction, allow_zero=split != "val")
    for name, value, low, high in (
        ("--batch-size", batch_size, 1, None),
        ("--max-length", max_length, 2, None),
        ("--qa-limit", qa_limit, 0, None),
        ("--seed", seed, 0, MAX_SEED),
    ):
        if value < low:
            raise ConfigError(f"{name} must be at least {low}, got {value}", f"pass e.g. {name} {max(low, 8)}")
        if high is not None and value > high:
            raise ConfigError(f"{name} must be at most {high}, got {value}", f"pass e.g. {name} 0")
    from loratune.data.classification import resolve_task_type

    seq_cls = resolve_task_type(task_type, data, fmt) == "seq-cls"
    if not seq_cls:
        raw = read(data, format=fmt, prompt_column=prompt_column, response_column=response_column)
    if adapter is not None:
        check_adapter_dir(adapter, allow_pickle=allow_pickle)
    if seq_cls:  # a classifier: loss, accuracy, macro-F1 (cli/cls_cmd.py)
        from loratune.cli.cls_cmd import eval_seq_cls
        from loratune.data.classification import read_cls

        eval_seq_cls(
            model,
            read_cls(data),
            adapter=adapter,
            split=split,
            val_fraction=val_fraction,
            seed=seed,
            batch_size=batch_size,
            max_length=max_length,
            compute_dtype=resolve_compute_dtype(dtype, "cpu"),
            allow_pickle=allow_pickle,
            json_out=json_out,
        )
        return
    metrics = read_metrics(adapter) if adapter is not None else None
    recorded = recorded_attention(metrics)
    # An adapter trained over a 4-bit base is scored over a 4-bit base unless --quant says otherwise.
    quant = quant if quant is not None else recorded_quant(metrics)
    check_compute_dtype(dtype)
    source = resolve_source(model)

    # ---- torch from here on
    run_device = resolve_device(device)  # a missing GPU: one line, before the model loads
    compute_dtype = resolve_compute_dtype(dtype, run_device)
    from loratune.trial.batching import usable
    from loratune.trial.evaluate import count_batches, mean_loss, qa_examples, qa_scores, safe_exp
    from loratune.trial.progress import progress
    from loratune.trial.runner import TrialRunner, quiet_libraries
    from loratune.trial.speed import attention_for, use_attention

    quiet_libraries()
    if quant != "none":
        from loratune.models.quantized import check_bitsandbytes

        check_bitsandbytes()
    runner = TrialRunner(source, compute_dtype=compute_dtype, allow_pickle=allow_pickle, device=run_device, quant=quant)
    prepared = prepare(
        raw, runner.tokenizer, max_length=max_length, val_fraction=val_fraction if split == "val" else 0.0, seed=seed
    )
    examples = prepared.val if split == "val" and prepared.val else prepared.train + prepared.val
    # The kernel `train` used: recorded in the adapter's metrics.json, else the same rule over the same
    # rows (train + validation of this file; train's reference passages are at most EAGER_MAX_TOKENS
    # long, so they never change the choice). Eager and SDPA differ in the last digits of the loss.
    kernel = recorded or attention_for(usable(prepared.train + prepared.val, max_length), max_length, runner.device)
    show = not (no_progress or json_out)
    scored = runner.model
    if adapter is not None:
        scored = _with_adapter(runner.model, adapter)
    try:
        with use_attention(runner.model, kernel):
            kernel = getattr(runner.model.config, "_attn_implementation", kernel)
            n_batches = count_batches(examples, batch_size=batch_size, max_length=max_length)
            with progress("scoring", n_batches, enabled=show) as bar:
                loss = mean_loss(
                    scored,
                    examples,
                    pad_id=runner.tokenizer.pad_token_id,
                    batch_size=batch_size,
                    max_length=max_length,
                    on_batch=bar.advance,
                )
            # prompt tokens masked → there is an answer to decode
            is_qa = any(ex.labels[0] == IGNORE_INDEX for ex in examples)
            scores = None
            if qa and is_qa:
                with progress("decoding", len(qa_examples(examples, qa_limit)), enabled=show) as bar:
                    scores = qa_scores(scored, runner.tokenizer, examples, limit=qa_limit, on_answer=bar.advance)
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
        "attention": kernel,
        "device": runner.device,
        "compute_dtype": compute_dtype,
        "quant": quant,
    }
    if json_out:
        print_json(out)
        return
    console.print(f"[bold]{runner.label}[/]" + (f" + {adapter}" if adapter else ""), highlight=False)
    table = Table("metric", "value")
    table.add_row("examples", str(len(examples)))
    table.add_row("loss (nats/token)", f"{loss:.4f}")
    table.add_row("perplexity", f"{safe_exp(loss):.3f}")
    if scores:
        table.add_row(f"exact match ({scores.n} greedy answers)", f"{100 * scores.exact_match:.1f} %")
        table.add_row("token F1", f"{100 * scores.token_f1:.1f} %")
    table.add_row("attention kernel", str(kernel))
    table.add_row("device", describe(runner.device, compute_dtype, quant))
    console.print(table)
    if scores and scores.samples:
        samples = Table("greedy answer", "reference", show_lines=True)
        for pred, ref in scores.samples:
            samples.add_row(_clip(pred), _clip(ref))
        console.print(samples)


def _clip(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _with_adapter(base: Any, adapter: Path) -> Any:
    from loratune.trial.adapter_io import load_adapter

    return load_adapter(base, adapter)
