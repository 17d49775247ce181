"""``recommend --task classification``: the seed's r = 1–4 against the literature's GLUE recipe (both
shown), the LR for a head trained from scratch, the head PEFT's SEQ_CLS trains, an encoder priced as a classifier."""

from __future__ import annotations

import pytest

from loratune.advise import AdviceInputs, recommend
from loratune.models import resolve_source
from loratune.models.seq_cls import advice_anatomy


@pytest.fixture(scope="module")
def minilm():
    return advice_anatomy(resolve_source("all-minilm-l6-v2"), "auto", "classification")


def test_encoder_with_classification_is_priced_as_a_classifier(minilm) -> None:
    assert minilm.architecture == "BertForSequenceClassification"
    plain = advice_anatomy(resolve_source("all-minilm-l6-v2"), "auto", "simple-qa")
    assert plain.architecture == "BertModel"
    assert advice_anatomy(resolve_source("smollm2-135m"), "auto", "classification").architecture == "LlamaForCausalLM"


def test_rank_follows_the_seed_and_shows_the_literature(minilm) -> None:
    rec = recommend(minilm, AdviceInputs(task="classification", dataset_size=540))
    r = rec.explanation("r")
    assert r.value == 4 and rec.config["r"] == 4
    assert r.alternative is not None and r.alternative.value == 8 and "Table 9" in r.alternative.source
    assert "Table 6" in r.note and "seed" in r.note
    lit = recommend(minilm, AdviceInputs(task="classification", dataset_size=540, rules="literature"))
    assert lit.config["r"] == 8
    seed = recommend(minilm, AdviceInputs(task="classification", dataset_size=540, rules="seed"))
    assert 1 <= seed.config["r"] <= 4


def test_lr_head_and_task_type(minilm) -> None:
    rec = recommend(minilm, AdviceInputs(task="sentiment polarity", dataset_size=540))
    lr = rec.explanation("learning_rate")
    assert lr.value == 5e-4 and "Table 9" in lr.source and lr.alternative is not None
    head = rec.explanation("classifier_head")
    assert head.value == ["classifier"] and "SEQ_CLS" in head.rule
    assert rec.config["task_type"] == "SEQ_CLS"
    # the head is in the count: LoRA r=4 on the all-linear names + 384·2 + 2
    assert rec.trainable_params - 770 == 4 * sum(
        m.in_features + m.out_features for m in minilm.modules if m.layer is not None
    )
