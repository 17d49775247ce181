"""Load a model *as a classifier* (``AutoModelForSequenceClassification``) with dense weights, for
classification trials: the same safety rules as ``weights.load_model`` (safetensors only unless
``allow_pickle``, never remote code), one output per label, the new head initialised under a fixed seed so
every process starts a trial from the same head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loratune.errors import ModelSourceError
from loratune.models.source import ModelSource
from loratune.models.weights import _DTYPES, weights_dir


def load_classifier(
    source: ModelSource,
    labels: Sequence[str],
    *,
    dtype: str = "fp32",
    device: str = "cpu",
    allow_pickle: bool = False,
) -> tuple[Any, Any]:
    """``(model, tokenizer)``: ``…ForSequenceClassification`` with ``len(labels)`` outputs, in eval mode."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if dtype not in _DTYPES:
        raise ModelSourceError(f"unknown dtype {dtype!r}", f"use one of {', '.join(_DTYPES)}")
    path = weights_dir(source, allow_pickle=allow_pickle)
    torch.manual_seed(0)
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report lists the new head as "MISSING": expected here
    try:
        model: Any = AutoModelForSequenceClassification.from_pretrained(
            str(path),  # type: ignore[arg-type]  # the stubs name a model class; a path is what it takes
            dtype=getattr(torch, _DTYPES[dtype]),
            local_files_only=True,
            use_safetensors=not allow_pickle or None,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
        )
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as e:
        raise ModelSourceError(f"cannot load {path}: {str(e)[:200]}", "check the model directory") from None
    finally:
        hf_logging.set_verbosity(level)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model.to(device).eval(), tok
