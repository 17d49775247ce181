"""The record every rule returns: a value, the rule that produced it, its inputs and its source.

Where the seed documents and the literature disagree, ``alternative`` holds the other side's value
and source, and ``note`` says which one loratune follows and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

# Sources, cited next to every rule. Seed files: 000 = "LoRA 하이퍼파라미터 선정 가이드",
# 003 = "Chapter 12: 고급 LoRA 기법" (/work/shared/seeds/).
SEED_TASK = "seed 000 §1.2 기준 1 (task complexity)"
SEED_DATA = "seed 000 §1.2 기준 2 (dataset size)"
SEED_CH12 = "seed 003 §4.1 recommend_rank()"
SEED_MODEL = "seed 000 §1.2 기준 3 (model size)"
SEED_VRAM = "seed 000 §1.2 기준 4 (VRAM)"
SEED_ALPHA = "seed 000 §2.2 규칙 1 (alpha = 2r)"
SEED_ALPHA_LR = "seed 000 §2.3 (alpha/LR pairs)"
SEED_TARGETS = "seed 000 §3.2–3.3 (module names, strategies)"
SEED_PRESETS = "seed 000 §4.1 (scenarios)"
SEED_QUICK = "seed 000 실전 팁 '빠른 시작'"
SEED_RESULT = "seed 000 §5.1 (measured run)"
SEED_DORA = "seed 003 §2, §6 (DoRA as default)"
SEED_ADALORA = "seed 003 §3.2 (AdaLoraConfig example)"
SEED_LAYERS = "seed 003 §5 (later layers only)"

LORA = "LoRA arXiv:2106.09685"
QLORA = "QLoRA arXiv:2305.14314"
LEARNS_LESS = "LoRA Learns Less and Forgets Less arXiv:2405.09673"
WITHOUT_REGRET = "LoRA Without Regret (Thinking Machines, 2025)"
TINKER_LR = "tinker-cookbook hyperparam_utils.get_lr (Thinking Machines)"
RANGE_TEST = "LR range test (Smith arXiv:1506.01186 §3.3)"
ONE_CYCLE = "Smith arXiv:1803.09820 §4.1"
EXPRESSIVE = "Expressive Power of LoRA arXiv:2310.17513"
RSLORA = "rsLoRA arXiv:2312.03732"
DORA = "DoRA arXiv:2402.09353"
LR_MATTERS = "Learning Rate Matters arXiv:2602.04998"
ADALORA = "AdaLoRA arXiv:2303.10512"
PEFT_ADALORA = "peft/tuners/adalora/config.py (AdaLoraConfig)"
LORATUNE = "loratune default"
CHECKPOINTING = "Chen et al. arXiv:1604.06174"
SEED_TITLES = {"000": "LoRA 하이퍼파라미터 선정 가이드", "003": "Chapter 12: 고급 LoRA 기법"}

# Short names for a narrow table column, and what :func:`source_legend` lists once for each:
# the name and its identifier (the full title is in ``--explain`` and ``--json``).
_SHORT = {
    LEARNS_LESS: ("Learns Less", "Learns Less arXiv:2405.09673"),
    WITHOUT_REGRET: ("Without Regret", "Without Regret (Thinking Machines, 2025)"),
    TINKER_LR: ("Tinker LR fit", "Tinker LR fit = tinker-cookbook hyperparam_utils.get_lr"),
    RANGE_TEST: ("LR range test", "LR range test = Smith arXiv:1506.01186 §3.3"),
    ONE_CYCLE: ("Smith 2018", "Smith 2018 = arXiv:1803.09820"),
    EXPRESSIVE: ("Expressive Power", "Expressive Power arXiv:2310.17513"),
    LR_MATTERS: ("LR Matters", "LR Matters arXiv:2602.04998"),
    PEFT_ADALORA: ("PEFT AdaLoraConfig", PEFT_ADALORA),
    LORA: ("LoRA", LORA),
    QLORA: ("QLoRA", QLORA),
    RSLORA: ("rsLoRA", RSLORA),
    DORA: ("DoRA", DORA),
    ADALORA: ("AdaLoRA", ADALORA),
    CHECKPOINTING: ("Chen et al.", CHECKPOINTING),
}


def source_parts(source: str) -> list[str]:
    """``"A; B Table 5"`` → ``["A", "B Table 5"]``."""
    return [p.strip() for p in source.split(";") if p.strip()]


def _short_part(part: str) -> tuple[str, str | None]:
    """(short form, full citation to list in the legend or None)."""
    if part.startswith("seed "):
        # "seed 000 §1.2 기준 1 (task complexity)": the parenthesis restates the rule; drop it.
        head = part.split(" (", 1)[0]
        return head, None
    for full, (short, legend) in _SHORT.items():
        if part.startswith(full):
            return short + part[len(full) :], legend
    return part, None


def short_source(source: str) -> str:
    """A source in the short form of the compact table: ``QLoRA; Learns Less; LoRA Table 5``."""
    return "; ".join(_short_part(p)[0] for p in source_parts(source))


def source_legend(sources: list[str]) -> list[str]:
    """What the short names of ``sources`` stand for, each once, in first-use order, then the
    titles of the seed documents cited."""
    out: list[str] = []
    seeds: list[str] = []
    for source in sources:
        for part in source_parts(source):
            full = _short_part(part)[1]
            if full is not None and full not in out:
                out.append(full)
            if part.startswith("seed ") and part[5:8] in SEED_TITLES and part[5:8] not in seeds:
                seeds.append(part[5:8])
    return out + [f"seed {n} = {SEED_TITLES[n]}" for n in sorted(seeds)]


@dataclass(frozen=True)
class Alternative:
    """The other side's value where seed and literature disagree."""

    value: Any
    rule: str
    source: str


@dataclass(frozen=True)
class Explanation:
    param: str
    value: Any
    rule: str
    source: str
    inputs: dict[str, Any] = field(default_factory=dict)
    alternative: Alternative | None = None
    note: str = ""  # which side loratune follows and why; or what a later step changed

    def with_value(self, value: Any, why: str) -> Explanation:
        """The same explanation after a later step (the VRAM fit) changed the value."""
        note = f"{self.note} {why}".strip()
        return replace(self, value=value, note=note)

    def to_dict(self) -> dict[str, Any]:
        return {
            "param": self.param,
            "value": self.value,
            "rule": self.rule,
            "source": self.source,
            "inputs": dict(self.inputs),
            "alternative": None
            if self.alternative is None
            else {"value": self.alternative.value, "rule": self.alternative.rule, "source": self.alternative.source},
            "note": self.note,
        }


def disagreement(
    param: str,
    followed: Explanation,
    other: Explanation,
    why: str,
) -> Explanation:
    """``followed`` with ``other`` attached as the alternative when their values differ."""
    if followed.value == other.value:
        return followed
    return replace(
        followed,
        alternative=Alternative(other.value, other.rule, other.source),
        note=f"{followed.note} {why}".strip(),
    )
