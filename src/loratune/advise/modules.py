"""Which modules to adapt: the seed's strategies and the literature's, as this model's real names.

Strategies (seed 000 §3.3): ``attention`` (전략 1, the seed's default), ``all`` = attention + FFN
(전략 2, complex tasks), ``qv`` = query and value only (전략 3, memory). The literature adapts every
linear layer [QLoRA 2305.14314; 2405.09673].
"""

from __future__ import annotations

from loratune.advise import explain as S
from loratune.advise.explain import Explanation
from loratune.advise.tasks import TaskClass
from loratune.anatomy.targets import TargetSpec, expand_shorthand, matches_suffix, resolve
from loratune.anatomy.types import ROLES, Anatomy, TargetWarning
from loratune.errors import TargetError

STRATEGIES = ("all", "attention", "qv")
STRATEGY_LABELS = {"all": "attention + MLP (all linear)", "attention": "attention only", "qv": "q and v only"}

# The seed's literal names per family (seed 000 §3.2): GPT-2's bare ``c_proj`` also hits the MLP.
_SEED_NAMES: dict[str, dict[str, list[str]]] = {
    "gpt2": {"attention": ["c_attn", "c_proj"], "all": ["c_attn", "c_proj", "c_fc"]},
    "llama": {
        "attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "all": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "qv": ["q_proj", "v_proj"],
    },
    "bert": {
        "attention": ["query", "key", "value"],
        "all": ["query", "key", "value", "dense"],
        "qv": ["query", "value"],
    },
}
_SEED_NAMES["mistral"] = _SEED_NAMES["llama"]


def ordered(anatomy: Anatomy, suffixes: list[str]) -> list[str]:
    """Suffixes in role order (q, k, v, qkv, o, up, gate, down) for stable, readable output."""
    rank = {r: i for i, r in enumerate(ROLES)}

    def key(s: str) -> tuple[int, str]:
        roles = [m.role for m in anatomy.modules if matches_suffix(m.name, s)]
        return (min((rank[r] for r in roles), default=len(ROLES)), s)

    return sorted(suffixes, key=key)


def role_targets(anatomy: Anatomy, strategy: str) -> tuple[list[str], list[TargetWarning]]:
    """(real suffixes, warnings) for a strategy, resolved by role on this model."""
    warnings: list[TargetWarning] = []
    if strategy == "qv":
        try:
            names = expand_shorthand(anatomy, "qv") or []
        except TargetError:
            # Fused q/k/v (GPT-2 c_attn, Falcon query_key_value): q+v alone is impossible.
            fused = [m for m in anatomy.modules if m.role == "attn_qkv"]
            names = sorted({m.suffix for m in fused})
            warnings.append(
                TargetWarning(
                    "fused_qkv",
                    f"q and v share one fused matrix ({', '.join(names)}) here: "
                    "'q and v only' adapts q, k and v together",
                    names[0] if names else None,
                    ("attn_q", "attn_k", "attn_v"),
                )
            )
        return ordered(anatomy, names), warnings
    names = expand_shorthand(anatomy, strategy) or []
    return ordered(anatomy, names), warnings


def seed_targets(anatomy: Anatomy, strategy: str) -> tuple[list[str], list[TargetWarning]]:
    """The seed's literal names where it lists this family (and they exist), else the same strategy by role."""
    literal = _SEED_NAMES.get(anatomy.model_type, {}).get(strategy)
    if literal:
        try:
            resolve(anatomy, TargetSpec(tuple(literal)))
            return list(literal), []
        except TargetError:
            pass
    return role_targets(anatomy, strategy)


def strategy_seed(task: TaskClass, goal: str) -> Explanation:
    """seed 000 §3.3: attention only by default; + FFN for complex tasks or quality; q+v for memory."""
    if goal == "memory":
        return Explanation("strategy", "qv", "goal=memory → 전략 3: query and value only", S.SEED_TARGETS)
    if goal == "quality" or task.name in ("generation", "expert"):
        why = "goal=quality" if goal == "quality" else f"task '{task.name}' is complex"
        return Explanation("strategy", "all", f"{why} → 전략 2: attention + FFN", S.SEED_TARGETS)
    return Explanation("strategy", "attention", "전략 1: attention only (the seed's default)", S.SEED_TARGETS)


def strategy_literature() -> Explanation:
    return Explanation(
        "strategy",
        "all",
        "every linear layer: needed to match full fine-tuning, most of the gain comes from the MLP; at a fixed "
        "budget more matrices at lower rank beat fewer at higher rank",
        f"{S.QLORA}; {S.LEARNS_LESS}; {S.LORA} Table 5",
    )


TARGETS_WHY = (
    "loratune follows the literature: attention-only underperforms, attention-only at r=256 loses to "
    "MLP-only at r=128 at equal parameters [LoRA Without Regret]."
)
