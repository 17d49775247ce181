"""Classifiers: our exact count (LoRA + the head PEFT's SEQ_CLS trains in full) equals PEFT's own
``get_nb_trainable_parameters()`` of ``get_peft_model(model, LoraConfig(task_type="SEQ_CLS", ...))``.

The same style as test_params_parity.py: each model is built on the meta device from its config with the
architecture swapped to ``…ForSequenceClassification`` (encoders and a Llama-style decoder), wrapped by PEFT
with the kwargs loratune exports, and compared with loratune's count from the anatomy.
"""

from __future__ import annotations

import warnings

import peft  # noqa: E402  (a dependency: missing is a failure)
import pytest

from loratune.anatomy.extract import anatomy_from_model
from loratune.anatomy.targets import TargetSpec, parse_targets, resolve, task_modules_to_save
from loratune.budget import AdapterSpec, count_params
from loratune.models import build_meta_model, read_config, resolve_source
from loratune.models.seq_cls import seq_cls_config

SMALL = {
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 256,
    "vocab_size": 512,
}
CONFIGS = {
    "bert-base-uncased": read_config(resolve_source("bert-base-uncased")),
    "all-minilm-l6-v2": read_config(resolve_source("all-minilm-l6-v2")),
    "smollm2-135m": read_config(resolve_source("smollm2-135m")),
    "roberta": {"model_type": "roberta", **SMALL},
    "distilbert": {
        "model_type": "distilbert",
        "dim": 128,
        "n_layers": 2,
        "n_heads": 4,
        "hidden_dim": 256,
        "vocab_size": 512,
    },
    "deberta-v2": {"model_type": "deberta-v2", **SMALL},
}


def spec(targets: str, r: int = 4, alpha: float = 8, method: str = "lora", **kw) -> AdapterSpec:
    tkw = {k: kw.pop(k) for k in list(kw) if k in ("layers_to_transform", "modules_to_save")}
    return AdapterSpec(TargetSpec(parse_targets(targets), **tkw), r=r, alpha=alpha, method=method, **kw)


CASES = [
    ("bert-base-uncased", 2, spec("query,value")),
    ("bert-base-uncased", 3, spec("query,key,value,attention.output.dense", r=8, alpha=16)),
    ("bert-base-uncased", 2, spec("all-linear", r=2)),
    ("bert-base-uncased", 2, spec("attention", method="dora")),
    ("bert-base-uncased", 5, spec("query,value", layers_to_transform=(10, 11))),
    ("all-minilm-l6-v2", 2, spec("query,value", r=1, alpha=2)),
    ("all-minilm-l6-v2", 2, spec("all-linear", r=16, alpha=32)),
    ("all-minilm-l6-v2", 4, spec("mlp")),
    ("smollm2-135m", 2, spec("q_proj,v_proj")),
    ("smollm2-135m", 3, spec("all-linear", r=8)),
    ("roberta", 2, spec("query,value")),
    ("roberta", 2, spec("all-linear")),
    ("distilbert", 2, spec("q_lin,v_lin")),
    ("deberta-v2", 2, spec("query_proj,value_proj")),
    ("deberta-v2", 3, spec("all-linear")),
]


def _model(name: str, num_labels: int):
    return build_meta_model(seq_cls_config(CONFIGS[name], num_labels))


@pytest.mark.parametrize(("name", "num_labels", "adapter"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_seq_cls_count_equals_peft(name: str, num_labels: int, adapter: AdapterSpec) -> None:
    anatomy = anatomy_from_model(_model(name, num_labels), source=name)
    assert anatomy.architecture.endswith("ForSequenceClassification")
    ours = count_params(anatomy, adapter)
    kwargs = {**ours.peft_config, "task_type": "SEQ_CLS"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = peft.get_peft_model(_model(name, num_labels), peft.LoraConfig(**kwargs))
    assert wrapped.get_nb_trainable_parameters() == (ours.trainable_params, ours.all_params)
    assert ours.modules_to_save_params > 0
    # PEFT's defaults, not ours: the exported config names no head
    assert "modules_to_save" not in ours.peft_config


def test_bert_head_is_hidden_times_labels_plus_bias() -> None:
    """BertForSequenceClassification: LoRA r·(768+768) on 12 query + 12 value, plus the head 768·2 + 2."""
    anatomy = anatomy_from_model(_model("bert-base-uncased", 2), source="bert")
    assert task_modules_to_save(anatomy) == ("classifier",)
    b = count_params(anatomy, spec("query,value"))
    assert b.modules_to_save_params == 768 * 2 + 2
    assert b.trainable_params == 24 * 4 * (768 + 768) + 1538 == 148_994


def test_llama_score_head_has_no_bias() -> None:
    anatomy = anatomy_from_model(_model("smollm2-135m", 3), source="smollm2")
    assert task_modules_to_save(anatomy) == ("score",)
    assert count_params(anatomy, spec("q_proj")).modules_to_save_params == 576 * 3


def test_all_linear_never_adapts_the_head() -> None:
    anatomy = anatomy_from_model(_model("roberta", 2), source="roberta")
    names = [m.name for m in resolve(anatomy, TargetSpec("all-linear")).modules]
    assert names and not any(n.startswith("classifier") for n in names)


def test_causal_lm_has_no_task_heads() -> None:
    anatomy = anatomy_from_model(build_meta_model(CONFIGS["smollm2-135m"]), source="smollm2")
    assert task_modules_to_save(anatomy) == ()
