"""The seed's five task-complexity classes, and free text mapped onto them (the mapping is shown).

Classes and rank ranges: seed 000 §1.2 기준 1 (태스크 복잡도). The keywords are the seed's own
examples for each class (감정 분류, Yes/No, 간단한 QA, 요약, 번역, 코드 생성, 창의적 글쓰기, 추론,
법률 문서, 의학 진단, 다중 도메인) plus their common English names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from loratune.errors import ConfigError


@dataclass(frozen=True)
class TaskClass:
    name: str
    label: str
    rank_range: tuple[int, int]
    rank: int  # the value the seed recommends for its example of this class
    examples: str


# seed 000 §1.2 기준 1: "매우 간단 r=1-4 (→ r=4로 충분)", "간단 r=4-8 (→ r=8 권장)", "중간 r=8-16 (→ r=16 권장)",
# "복잡 r=16-32 (→ r=32 권장)", "매우 복잡 r=32-64 (→ r=64 이상)".
TASK_CLASSES: dict[str, TaskClass] = {
    c.name: c
    for c in (
        TaskClass("classification", "very simple", (1, 4), 4, "sentiment, yes/no, simple patterns"),
        TaskClass("simple-qa", "simple", (4, 8), 8, "short QA, short summaries, close-language translation"),
        TaskClass("complex-qa", "medium", (8, 16), 16, "complex QA, long summaries, simple code generation"),
        TaskClass("generation", "complex", (16, 32), 32, "creative writing, complex reasoning, multi-step problems"),
        TaskClass("expert", "very complex", (32, 64), 64, "expert-level generation, multi-domain, deep reasoning"),
    )
}

# Free-text keywords → class. Checked from the most complex class down, so "legal summary" is expert.
_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("expert", ("expert", "legal", "law", "medical", "medicine", "diagnos", "clinical", "multi-domain", "multidomain")),
    (
        "generation",
        ("creative", "story", "stories", "novel", "fiction", "poem", "reasoning", "math", "multi-step", "multistep"),
    ),
    ("complex-qa", ("complex", "code", "coding", "program", "long summar", "long-summar", "long document")),
    ("simple-qa", ("qa", "question", "answer", "faq", "summar", "translat", "chat", "instruction")),
    ("classification", ("classif", "sentiment", "yes/no", "yes-no", "label", "polarity", "intent", "spam")),
)

_ALIASES = {
    "classify": "classification",
    "very-simple": "classification",
    "simple": "simple-qa",
    "qa": "simple-qa",
    "medium": "complex-qa",
    "complex": "generation",
    "very-complex": "expert",
}


@dataclass(frozen=True)
class TaskMapping:
    """How the user's ``--task`` text became a class: ``matched`` is the keyword (or "exact")."""

    text: str
    task: TaskClass
    matched: str

    def describe(self) -> str:
        if self.matched == "exact":
            return f"{self.task.name} ({self.task.label}: {self.task.examples})"
        return f"'{self.text}' → {self.task.name} (matched '{self.matched}'; {self.task.label}: {self.task.examples})"


def map_task(text: str) -> TaskMapping:
    """A class name, an alias, or free text ("legal contract drafting") → :class:`TaskMapping`."""
    norm = re.sub(r"[\s_]+", "-", text.strip().lower())
    if norm in TASK_CLASSES:
        return TaskMapping(text, TASK_CLASSES[norm], "exact")
    if norm in _ALIASES:
        return TaskMapping(text, TASK_CLASSES[_ALIASES[norm]], norm)
    low = text.lower()
    for name, words in _KEYWORDS:
        for w in words:
            # "qa" must be a whole word; longer stems ("summar") may start a word.
            pattern = rf"\b{re.escape(w)}\b" if len(w) <= 3 else rf"\b{re.escape(w)}"
            if re.search(pattern, low):
                return TaskMapping(text, TASK_CLASSES[name], w)
    raise ConfigError(
        f"cannot map the task {text!r} to a complexity class",
        f"use one of {', '.join(TASK_CLASSES)} (seed 000 §1.2), or describe it with words like "
        "'sentiment', 'qa', 'code', 'creative', 'legal'",
    )
