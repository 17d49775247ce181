"""The encoder-classifier memory terms (budget/memory.py), pinned to numbers worked out by hand; the
measured peaks they match are bench/memory_accuracy.py's MiniLM rows."""

from __future__ import annotations

from loratune.anatomy.targets import TargetSpec, parse_targets
from loratune.budget import AdapterSpec
from loratune.budget.memory import MemorySettings, estimate_memory, is_encoder_classifier, num_labels
from loratune.models import load_anatomy, resolve_source
from loratune.models.seq_cls import seq_cls_anatomy

SPEC = AdapterSpec(TargetSpec(parse_targets("query,value")), r=8, alpha=16, dropout=0.05)
SETTINGS = MemorySettings(batch_size=16, seq_len=64, dtype="fp32", device="cpu")


def test_minilm_classifier_terms_by_hand() -> None:
    anatomy = seq_cls_anatomy(resolve_source("all-minilm-l6-v2"), 2)
    assert is_encoder_classifier(anatomy) and num_labels(anatomy) == 2
    assert anatomy.facts.attention_dropout == 0.1 and anatomy.facts.hidden_dropout == 0.1
    est = estimate_memory(anatomy, SPEC, SETTINGS)
    t, h, i, b, a, s = 16 * 64, 384, 1536, 16, 12, 64
    # attention: q (scaled copy), k, v (t·h each) + softmax out, dropout mask, dropped probs (b·a·s² fp32 each)
    # + the output dropout's mask (t·h)
    attention = 4 * t * h * 4 + 3 * b * a * s * s * 4 + t * h * 4
    mlp = t * i * 4 + t * h * 4  # GELU's input + the output dropout's mask
    norms = 2 * (t * h * 4 + 8 * t)  # two post-LNs: input + mean/rstd
    assert est.per_layer["attention"] == attention == 17_301_504
    assert est.per_layer["mlp"] == mlp == 7_864_320
    assert est.per_layer["norm"] == norms
    # no vocabulary logits (b·2 fp32 only): the peak is in the blocks' backward, not the loss
    assert est.peak_phase == "block backward" and est.logits_bytes == 0
    assert est.total_bytes == 299_916_960  # measured 299,876,104 (bench/results/memory_accuracy.json): +0.01 %


def test_decoders_and_headless_encoders_keep_their_terms() -> None:
    bert = load_anatomy(resolve_source("bert-base-uncased"))  # BertForMaskedLM: no classifier head
    assert not is_encoder_classifier(bert) and num_labels(bert) == 0
    smol = load_anatomy(resolve_source("smollm2-135m"))
    est = estimate_memory(smol, AdapterSpec(TargetSpec(("attention",)), r=8, alpha=16), SETTINGS.replace(batch_size=1))
    assert est.logits_bytes == 64 * 49152 * 4  # the LM head's fp32 log-softmax over the vocabulary
