"""Plain values that describe a model's anatomy. No torch here: these cross module boundaries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ROLES = (
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_qkv",
    "attn_o",
    "mlp_up",
    "mlp_gate",
    "mlp_down",
    "lm_head",
    "embedding",
    "other",
)
ATTENTION_ROLES = frozenset({"attn_q", "attn_k", "attn_v", "attn_qkv", "attn_o"})
MLP_ROLES = frozenset({"mlp_up", "mlp_gate", "mlp_down"})


WarningKind = Literal["ambiguous_suffix", "mixed_roles", "fused_qkv", "fused_gate_up", "tied_head"]
WARNING_KINDS: tuple[WarningKind, ...] = ("ambiguous_suffix", "mixed_roles", "fused_qkv", "fused_gate_up", "tied_head")


@dataclass(frozen=True)
class TargetWarning:
    """Something a model or a target spec does that the user may not expect. Code decides on
    ``kind`` (and ``target``/``roles``); ``message`` is for people.

    - ``ambiguous_suffix``: a bare module name on this model means modules of several roles
      (GPT-2's ``c_proj`` is attention output and MLP down); ``target`` is that name;
    - ``mixed_roles``: a target of this spec matches modules of several roles; ``target`` is it;
    - ``fused_qkv``: q, k and v share one matrix (``target``: the fused name), q+v alone is impossible;
    - ``fused_gate_up``: the MLP gate and up projections share one matrix;
    - ``tied_head``: the LM head shares its weight with the input embedding.
    """

    kind: WarningKind
    message: str
    target: str | None = None
    roles: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "target": self.target, "roles": list(self.roles), "message": self.message}


@dataclass(frozen=True)
class AdaptableModule:
    """One module PEFT's LoRA can wrap: ``nn.Linear``, transformers' ``Conv1D`` or ``nn.Embedding``.

    ``in_features``/``out_features`` follow the math, not the storage: GPT-2's ``Conv1D`` stores its
    weight transposed, but ``c_attn`` is still 768 → 2304. For an embedding they are
    num_embeddings → embedding_dim.
    """

    name: str
    layer: int | None
    role: str
    in_features: int
    out_features: int
    kind: str
    bias: bool = False

    @property
    def suffix(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    @property
    def weight_params(self) -> int:
        return self.in_features * self.out_features


# Bidirectional encoders with a BERT-style block: attention, dropout, LayerNorm, GELU MLP, dropout, LayerNorm.
ENCODER_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "distilbert", "deberta", "deberta-v2", "electra"})


@dataclass(frozen=True)
class ArchFacts:
    """The architecture numbers the memory estimate needs, read from the model config."""

    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    mlp_kind: str  # "swiglu" (gated) or "gelu" (plain 2-matrix MLP)
    max_positions: int | None = None
    is_encoder_decoder: bool = False
    # Encoders (BERT family) train with their own dropouts on: each keeps a mask (budget/memory.py).
    # Read for ENCODER_TYPES only; 0.0 elsewhere (and left out of catalog snapshots when 0.0).
    attention_dropout: float = 0.0
    hidden_dropout: float = 0.0


@dataclass(frozen=True)
class Anatomy:
    """Everything loratune knows about a model without its weights."""

    source: str
    architecture: str
    model_type: str
    num_layers: int
    total_params: int
    modules: tuple[AdaptableModule, ...]
    facts: ArchFacts
    tied_embeddings: bool = False
    output_module: str | None = None
    # Recursive parameter count of every named module (for ``modules_to_save``), and the class
    # name of every named module that LoRA cannot wrap (to explain a target that hits one).
    module_params: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    container_names: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def by_name(self) -> dict[str, AdaptableModule]:
        return {m.name: m for m in self.modules}

    def roles_per_layer(self) -> dict[int, set[str]]:
        out: dict[int, set[str]] = {}
        for m in self.modules:
            if m.layer is not None:
                out.setdefault(m.layer, set()).add(m.role)
        return out
