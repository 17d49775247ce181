"""Advice for classification (``--task classification``; the seed's "very simple" class).

Rank. The seed (000 §1.2 기준 1): sentiment positive/negative, yes/no → r = 1–4 (r = 4 is enough). The
literature's recipe for GLUE classification with LoRA is r = 8 on W_q, W_v (LoRA arXiv:2106.09685
App. D Table 9, RoBERTa/DeBERTa), but the same paper's ablation (Table 6: GPT-3 on MNLI, W_q + W_v at
r = 1 scores 91.3 vs 91.6 at r = 8) says a classifier needs very little rank — the seed's side. Both are
shown; loratune follows the seed (checked on the demo data by ``bench/cls_rank_sweep.py``).

Learning rate: Table 9's LoRA learning rates for GLUE are 4e-4–5e-4 (the head trains from scratch), not the
2e-4 of instruction tuning. The width fit of generation advice (``lr_rule.py``: LoRA ≈ 10× a full
fine-tuning LR that falls with hidden size) is not applied here: it was fitted on decoder SFT, while this LR is
bounded by a head trained from scratch at the same rate, and Table 9 measured it on the encoder sizes this path
serves (MiniLM-L6 is 384 wide, RoBERTa-base 768). The head: PEFT's ``task_type="SEQ_CLS"`` trains
``classifier`` / ``score`` in full (``modules_to_save``); budget counts it.
"""

from __future__ import annotations

from loratune.advise import explain as S
from loratune.advise.explain import Explanation
from loratune.anatomy.targets import task_modules_to_save
from loratune.anatomy.types import Anatomy

LORA_GLUE = f"{S.LORA} App. D Table 9"
LORA_RANK_ABLATION = f"{S.LORA} Table 6"

CLS_RANK_WHY = (
    "loratune follows the seed here: the literature's r=8 is a recipe default, and its own ablation "
    f"(r=1 on W_q, W_v within 0.3 points of r=8 on MNLI [{LORA_RANK_ABLATION}]) agrees that a classifier "
    "needs little rank; bench/cls_rank_sweep.py measures r 1–16 on the demo classification data."
)


def literature_cls_rank(capacity_r: int) -> Explanation:
    value = max(8, capacity_r)
    return Explanation(
        "r",
        value,
        "the LoRA paper's GLUE recipe: r=8 on W_q, W_v for every classification task"
        + (f", raised to the capacity floor r ≥ {capacity_r}" if capacity_r > 8 else ""),
        LORA_GLUE,
        {"capacity_r": capacity_r},
    )


def literature_cls_lr() -> Explanation:
    return Explanation(
        "learning_rate",
        5e-4,
        "GLUE classification with LoRA: 4e-4–5e-4 (the new head trains from scratch); 5e-4 on the larger sets",
        LORA_GLUE,
        {},
    )


def head_row(anatomy: Anatomy) -> Explanation:
    """Which classifier head PEFT's SEQ_CLS trains in full (and budget counts)."""
    heads = task_modules_to_save(anatomy)
    if heads:
        rule = f"PEFT task_type SEQ_CLS adds {', '.join(heads)} to modules_to_save: the head is trained in full"
        value: object = list(heads)
    else:
        rule = (
            f"{anatomy.architecture} has no classification head: train with --task-type seq-cls, which loads "
            "…ForSequenceClassification; PEFT's SEQ_CLS then trains its head (classifier / score) in full"
        )
        value = "added at training"
    return Explanation("classifier_head", value, rule, "peft/peft_model.py (PeftModelForSequenceClassification)")
