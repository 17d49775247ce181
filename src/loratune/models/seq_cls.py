"""The classifier form of a model: its config with the architecture swapped to ``…ForSequenceClassification``.

``budget --task-type seq-cls`` and the parity tests build that skeleton on the meta device, so the head
(``classifier`` / ``score``) is in the anatomy and counted exactly; trials load the same class with weights
(``models.classifier.load_classifier``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loratune.errors import ModelSourceError


def seq_cls_config(config: dict[str, Any], num_labels: int) -> dict[str, Any]:
    """``config`` for ``AutoModelForSequenceClassification`` with ``num_labels`` outputs."""
    if num_labels < 2:
        raise ModelSourceError(f"a classifier needs at least 2 labels, got {num_labels}", "pass --num-labels 2 or more")
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    model_type = config.get("model_type")
    cls = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES.get(str(model_type))
    if cls is None:
        raise ModelSourceError(
            f"transformers has no sequence-classification model for model_type {model_type!r}",
            "use an encoder (BERT, RoBERTa, DeBERTa …) or a decoder with a …ForSequenceClassification class",
        )
    out = {k: v for k, v in config.items() if k not in ("architectures", "id2label", "label2id")}
    out["architectures"] = [cls]
    out["num_labels"] = num_labels
    return out


def seq_cls_anatomy(source: Any, num_labels: int) -> Any:
    """The anatomy of ``source`` as a classifier with ``num_labels`` outputs (built on the meta device)."""
    from loratune.models.skeleton import anatomy_from_config, read_config

    return anatomy_from_config(seq_cls_config(read_config(source), num_labels), source=source.label)


def load_task_anatomy(
    source: Any, task_type: str = "causal-lm", num_labels: int = 2, *, load: Callable[[Any], Any] | None = None
) -> Any:
    """The anatomy ``budget``/``recommend`` price: the model as it is (``load``, default
    ``skeleton.load_anatomy``), or (``seq-cls``) as a classifier."""
    from loratune.errors import ConfigError
    from loratune.models.skeleton import load_anatomy

    if task_type == "causal-lm":
        return (load or load_anatomy)(source)
    if task_type != "seq-cls":
        raise ConfigError(f"unknown task type {task_type!r}", "use causal-lm or seq-cls")
    return seq_cls_anatomy(source, num_labels)


def advice_anatomy(
    source: Any, task_type: str, task: str | None, num_labels: int = 2, *, load: Callable[[Any], Any] | None = None
) -> Any:
    """``recommend``'s anatomy: ``auto`` prices an encoder (BERT family) given ``--task classification``
    as the classifier it will train as (head counted, no LM logits); everything else as it is."""
    if task_type == "auto":
        from loratune.advise.tasks import map_task
        from loratune.anatomy.types import ENCODER_TYPES
        from loratune.models.skeleton import read_config

        is_cls = task is not None and map_task(task).task.name == "classification"
        task_type = "seq-cls" if is_cls and read_config(source).get("model_type") in ENCODER_TYPES else "causal-lm"
    return load_task_anatomy(source, task_type, num_labels, load=load)
