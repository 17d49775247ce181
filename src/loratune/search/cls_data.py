"""A search over a classifier (``--task-type seq-cls``, or classification data under ``auto``): the model
loaded once as ``AutoModelForSequenceClassification`` for the training split's labels, the data tokenized
by ``trial.seq_cls`` exactly as ``loratune train`` does, the baseline from the advice for classification."""

from __future__ import annotations

from typing import Any

from loratune.errors import DataError
from loratune.search.events import Log, ModelLoading, ignore


def load_cls_inputs(config: Any, source: Any, *, log: Log = ignore) -> Any:
    from loratune.data.classification import read_cls
    from loratune.search.baseline import recommended_baseline
    from loratune.search.config import content_digest
    from loratune.search.run import SearchInputs
    from loratune.trial.cls_runner import ClassifierRunner
    from loratune.trial.seq_cls import labels_of, prepare_cls

    if getattr(config, "quant", "none") != "none":
        raise DataError(f"--quant {config.quant} is not wired for classifiers", "drop --quant for classification data")
    raw = read_cls(config.data, val_data=config.val_data)
    labels = labels_of(raw, val_fraction=0.1, seed=config.seed)
    log(ModelLoading(source.label))
    # the dtype and device rule of the causal-LM search (search/run.py); no quantized classifier base
    runner = ClassifierRunner(source, labels=labels, compute_dtype="auto", threads=config.threads, device=config.device)
    config.check_against(runner.anatomy)  # a --modules set that matches nothing: one line
    data = prepare_cls(raw, runner.tokenizer, max_length=config.max_length, val_fraction=0.1, seed=config.seed)
    if not data.train or not data.val:
        raise DataError(f"{data.path} is too small to split into train and validation", "give at least 10 examples")
    anatomy = runner.anatomy  # the classifier's, head included (its budget counts the head)
    baseline, rec_lr, rec = recommended_baseline(anatomy, len(data.train), config.task or "classification")
    digest = content_digest(data.path)
    if config.val_data:
        from loratune.data import resolve_data_arg

        digest += "+" + content_digest(str(resolve_data_arg(config.val_data)))
    return SearchInputs(
        model=source.label,
        anatomy=anatomy,
        train=data.train,
        val=data.val[: config.val_examples],
        reference=[],
        data_digest=digest,
        baseline=baseline,
        recommended_lr=rec_lr,
        recommendation=rec,
        runner=runner,
        compute_dtype=runner.compute_dtype,
    )
