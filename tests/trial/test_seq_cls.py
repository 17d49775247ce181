"""Classification trials on tiny random classifiers (2 layers, 64 wide): an encoder (BERT) and a decoder
(Llama), each learning a rule a few LoRA steps can pick up; metrics before/after, exact counts, clean base."""

from __future__ import annotations

import random

import pytest
import torch

from loratune.anatomy.targets import TargetSpec, parse_targets
from loratune.budget import AdapterSpec, count_params
from loratune.trial import TrainSettings
from loratune.trial.cls_runner import ClassifierRunner
from loratune.trial.metrics import accuracy, macro_f1
from loratune.trial.seq_cls import ClsRow, batches, collate, evaluate_cls

VOCAB = 64


class Tok:
    pad_token_id = 0
    eos_token_id = 1
    pad_token = "<pad>"
    eos_token = "</s>"


def tiny_bert_cls(tiny_config, seed: int = 0):
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = tiny_config(
        "bert",
        vocab_size=VOCAB,
        max_position_embeddings=64,
        num_labels=2,
        initializer_range=0.2,  # as the root tiny_llama: lets a few steps show learning
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertForSequenceClassification(cfg).eval()


def tiny_llama_cls(tiny_config, seed: int = 0):
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(seed)
    cfg = tiny_config(
        "llama", vocab_size=VOCAB, max_position_embeddings=64, num_labels=2, pad_token_id=0, initializer_range=0.2
    )
    return LlamaForSequenceClassification(cfg).eval()


def rows(n: int, seed: int) -> list[ClsRow]:
    """Label 1 iff the marker token 5 occurs (anywhere) in the row: learnable, not by length."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ids = [rng.randint(10, VOCAB - 1) for _ in range(rng.randint(4, 12))]
        label = rng.random() < 0.5
        if label:
            ids[rng.randrange(len(ids))] = 5
        out.append(ClsRow(ids, int(label)))
    return out


@pytest.mark.parametrize(
    ("build", "targets"), [(tiny_bert_cls, "query,value"), (tiny_llama_cls, "q_proj,v_proj")], ids=["bert", "llama"]
)
def test_trial_learns_and_reports_metrics(tiny_config, build, targets) -> None:
    model = build(tiny_config)
    runner = ClassifierRunner((model, Tok()), compute_dtype="fp32", labels=("no", "yes"), threads=1)
    probe = {k: v.clone() for k, v in runner.model.state_dict().items()}
    spec = AdapterSpec(TargetSpec(parse_targets(targets)), r=4, alpha=8, dropout=0.0)
    settings = TrainSettings(learning_rate=1e-2, batch_size=16, max_steps=120, warmup_ratio=0.0, compute_dtype="fp32")
    res = runner.run(spec, settings, rows(256, 1), rows(64, 2), progress=False)
    assert res.status == "ok", res.message
    for k in ("val_loss_before", "val_accuracy_before", "val_f1_before", "val_loss_after"):
        assert getattr(res, k) is not None, k
    assert res.val_accuracy_after > max(0.8, res.val_accuracy_before)
    assert res.val_f1_after > 0.8 and res.val_loss_after < res.val_loss_before
    d = res.to_dict()
    assert {"val_accuracy_before", "val_accuracy_after", "val_f1_before", "val_f1_after"} <= set(d)
    assert res.extra["task_type"] == "seq-cls" and res.extra["labels"] == ["no", "yes"]
    # the count the trial trained = loratune's budget (LoRA + the head PEFT's SEQ_CLS trains in full)
    assert res.trainable_params == count_params(runner.anatomy, spec).trainable_params
    assert res.extra["head_params"] == count_params(runner.anatomy, spec).modules_to_save_params
    # the base (head included) is exactly as it came
    after = runner.model.state_dict()
    assert set(after) == set(probe) and all(torch.equal(after[k], probe[k]) for k in probe)


def test_saved_adapter_reproduces_val_metrics(tiny_config, tmp_path) -> None:
    from peft import PeftModel

    runner = ClassifierRunner((tiny_bert_cls(tiny_config), Tok()), compute_dtype="fp32", labels=("a", "b"))
    spec = AdapterSpec(TargetSpec(parse_targets("query,value")), r=2, alpha=4)
    settings = TrainSettings(learning_rate=5e-3, batch_size=16, max_steps=10, compute_dtype="fp32")
    val = rows(40, 3)
    res = runner.run(spec, settings, rows(128, 4), val, save_dir=tmp_path / "a", progress=False)
    loaded = PeftModel.from_pretrained(runner.model, str(tmp_path / "a"))
    try:
        s = evaluate_cls(loaded, val, pad_id=0, batch_size=16)
    finally:
        loaded.unload()
    assert s is not None
    assert s.loss == pytest.approx(res.val_loss_after, rel=1e-5) and s.accuracy == res.val_accuracy_after
    import json

    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["val_accuracy_after"] == res.val_accuracy_after and metrics["extra"]["labels"] == ["a", "b"]


def test_bf16_trial_trains_and_leaves_the_base_head_bf16(tiny_config) -> None:
    runner = ClassifierRunner((tiny_bert_cls(tiny_config), Tok()), compute_dtype="bf16", labels=("a", "b"))
    spec = AdapterSpec(TargetSpec(parse_targets("query,value")), r=2, alpha=4)
    res = runner.run(spec, TrainSettings(learning_rate=1e-3, batch_size=8, max_steps=3), rows(32, 5), rows(8, 6))
    assert res.status == "ok" and res.val_accuracy_after is not None
    assert runner.model.classifier.weight.dtype == torch.bfloat16  # the base's own head untouched


def test_batches_cover_every_row_once_and_pad_right() -> None:
    data = rows(50, 7)
    seen = [id(r) for b in batches(data, 8, seed=0) for r in b]
    assert sorted(seen) == sorted(id(r) for r in data)
    b = collate(data[:3], pad_id=0)
    longest = max(len(r.input_ids) for r in data[:3])
    assert b["input_ids"].shape == (3, longest) and b["labels"].tolist() == [r.label for r in data[:3]]
    assert int(b["attention_mask"][0].sum()) == len(data[0].input_ids)


def test_metrics_by_hand() -> None:
    refs = [0, 0, 1, 1, 2, 2]
    preds = [0, 1, 1, 1, 0, 2]
    assert accuracy(preds, refs) == pytest.approx(4 / 6)
    # class 0: tp1 fp1 fn1 → 0.5; class 1: tp2 fp1 fn0 → 0.8; class 2: tp1 fp0 fn1 → 2/3
    assert macro_f1(preds, refs) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert macro_f1([1, 1], [0, 0]) == 0.0  # never right: both classes F1 0
