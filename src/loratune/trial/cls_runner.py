"""``ClassifierRunner``: a :class:`TrialRunner` whose base model is a classifier
(``AutoModelForSequenceClassification`` for the data's labels) and whose trials are classification trials
(``trial/seq_cls.py``). Loaded once per process like the causal-LM runner; the base is restored after each."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loratune.budget import AdapterSpec
from loratune.models import ModelSource
from loratune.trial.runner import TrialRunner, _prepare
from loratune.trial.types import TrainSettings, TrialResult


class ClassifierRunner(TrialRunner):
    task_type = "seq-cls"

    def __init__(self, source: ModelSource | str | tuple[Any, Any], *, labels: Sequence[str], **kwargs: Any) -> None:
        """``labels``: the classes, in label-id order (the training split's, ``data.classification``)."""
        self.labels = tuple(labels)
        super().__init__(source, **kwargs)

    def run(
        self,
        adapter: AdapterSpec,
        settings: TrainSettings,
        train: Sequence[Any],
        val: Sequence[Any],
        reference: Sequence[Any] | None = None,
        *,
        on_eval: Callable[[int, float], bool] | None = None,
        save_dir: Path | None = None,
        progress: bool = True,
        peft_extra: dict[str, Any] | None = None,
        measure_memory: bool = True,
    ) -> TrialResult:
        """A classification trial; ``reference`` (forgetting text) does not apply to a classifier."""
        from loratune.trial.seq_cls import run_cls_trial

        return run_cls_trial(
            self.model_for(settings.compute_dtype),
            self.tokenizer,
            self.anatomy,
            adapter,
            settings,
            train,
            val,
            on_eval=on_eval,
            save_dir=save_dir,
            progress=progress,
            peft_extra=peft_extra,
            device=self.device,
            measure_memory=measure_memory,
            threads=self.threads,
            labels=self.labels,
        )

    def _load(self, dtype: str) -> tuple[Any, Any]:
        from loratune.models.classifier import load_classifier

        assert self.source is not None
        model, tok = load_classifier(
            self.source, self.labels, dtype=dtype, device=self.device, allow_pickle=self.allow_pickle
        )
        return _prepare(model), tok
