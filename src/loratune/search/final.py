"""What a search leaves behind: ``best_config.json`` (the chosen config, why, and the path that led to
it), the exports (PEFT, Axolotl, ...) and, with ``--train-final``, the trained adapter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loratune.errors import ConfigError
from loratune.paths import write_atomic
from loratune.search.saved import BEST_CONFIG, SEARCH_JSON
from loratune.search.staged import SearchOutcome
from loratune.search.study import SearchStudy, run_counts

__all__ = ["BEST_CONFIG", "SEARCH_JSON", "best_config", "peft_config", "write_outputs"]


def peft_config(anatomy: Any, variant: Any) -> dict[str, Any]:
    """PEFT ``LoraConfig`` kwargs of a variant, with its module shorthand resolved to real names."""
    from loratune.anatomy.targets import resolve

    spec = variant.adapter_spec(anatomy.num_layers)
    kw = spec.peft_kwargs(resolve(anatomy, spec.targets).peft_target_modules)
    seq_cls = anatomy.architecture.endswith("ForSequenceClassification")
    kw.setdefault("task_type", "SEQ_CLS" if seq_cls else "CAUSAL_LM")
    return kw


def best_config(
    outcome: SearchOutcome,
    studies: list[SearchStudy],
    anatomy: Any,
    model: str,
    training: dict[str, Any],
    run_settings: dict[str, Any],
) -> dict[str, Any]:
    """``studies``: the search's study, then its ladder rungs' (their runs count as the search's)."""
    c = outcome.choice.chosen
    trained, cached = run_counts([r for s in studies for r in s.finished()])
    ladder = outcome.ladder
    if ladder is not None and ladder.rungs:
        top = ladder.rungs[-1].steps
        note = (f"learning_rate was re-tuned at {top} steps, the fidelity ladder's top rung (the search's runs "
                f"were {ladder.base_steps} steps); a run much longer than that may want a lower one.")  # fmt: skip
    else:
        note = ("learning_rate was tuned on the search's short runs; runs under ~100 steps favour a higher LR "
                "(≈15× the full fine-tuning LR, vs ≈10× for longer runs [LoRA Without Regret]) — for a long run "
                "consider ~2/3 of it.")  # fmt: skip
    best = {
        "model": model,
        "strategy": outcome.strategy,
        "chosen": outcome.choice.to_dict()["chosen"],
        "config": peft_config(anatomy, c.variant),
        "training": {**training, "learning_rate": c.learning_rate},
        "reason": outcome.choice.reason(),
        "choice": outcome.choice.to_dict(),
        "stages": [s.to_dict() for s in outcome.stages],
        "search": {
            "runs_trained": trained,
            "runs_answered_from_cache": cached,
            "tokens_trained": sum(s.tokens() for s in studies),
            "per_run_settings": run_settings,
        },
        "notes": [note],
    }
    if ladder is not None:
        best["ladder"] = ladder.to_dict()
        if outcome.short_choice is not None:
            best["ladder"]["short_run_choice"] = outcome.short_choice.to_dict()["chosen"]
    return best


def write_outputs(out_dir: Path, best: dict[str, Any], exports: list[str]) -> list[Path]:
    """``best_config.json`` plus one file per export format; returns the paths written."""
    written = [out_dir / BEST_CONFIG]
    write_atomic(written[0], json.dumps(best, indent=2, default=str) + "\n")
    if not exports:
        return written
    try:
        from loratune.export import FORMATS, SUFFIXES, export_config
    except ImportError:  # the export stage is optional for a search
        return written
    for fmt in exports:
        if fmt not in FORMATS:
            raise ConfigError(f"unknown export format {fmt!r}", f"use one of {', '.join(FORMATS)}")
        text = export_config(fmt, {"config": best["config"], "training": best["training"]}, best["model"])
        path = out_dir / "exports" / f"{fmt}{SUFFIXES.get(fmt, '.txt')}"
        write_atomic(path, text)
        written.append(path)
    return written
