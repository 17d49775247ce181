"""Give every adaptable module a role (attn_q … mlp_down, lm_head) from its name.

Names differ per family (the seed guide §3.2 lists GPT-2, LLaMA and BERT); the suffix alone is not
enough: GPT-2's ``c_proj`` and BERT's ``dense`` mean different things under attention and MLP
parents, so the parent path decides first.
"""

from __future__ import annotations

import re

# Leaf names whose meaning does not depend on the parent.
_LEAF_ROLES = {
    "q_proj": "attn_q",
    "query": "attn_q",
    "q": "attn_q",
    "wq": "attn_q",
    "k_proj": "attn_k",
    "key": "attn_k",
    "k": "attn_k",
    "wk": "attn_k",
    "v_proj": "attn_v",
    "value": "attn_v",
    "v": "attn_v",
    "wv": "attn_v",
    "c_attn": "attn_qkv",
    "qkv_proj": "attn_qkv",
    "query_key_value": "attn_qkv",
    "wqkv": "attn_qkv",
    "w_pack": "attn_qkv",
    "qkv": "attn_qkv",
    "o_proj": "attn_o",
    "out_proj": "attn_o",
    "o": "attn_o",
    "wo_attn": "attn_o",
    "gate_proj": "mlp_gate",
    "wi_0": "mlp_gate",
    "w1": "mlp_gate",
    "up_proj": "mlp_up",
    "gate_up_proj": "mlp_up",
    "c_fc": "mlp_up",
    "fc1": "mlp_up",
    "wi": "mlp_up",
    "wi_1": "mlp_up",
    "w3": "mlp_up",
    "dense_h_to_4h": "mlp_up",
    "fc_in": "mlp_up",
    "down_proj": "mlp_down",
    "fc2": "mlp_down",
    "w2": "mlp_down",
    "dense_4h_to_h": "mlp_down",
    "fc_out": "mlp_down",
    "lm_head": "lm_head",
}

_ATTN_PARENT = re.compile(
    r"(^|\.)(attn|attention|self_attn|self_attention|selfattention|encdecattention|crossattention)(\.|$)", re.I
)
_MLP_PARENT = re.compile(r"(^|\.)(mlp|ffn|feed_forward|densereludense|intermediate|layer\.\d+\.output)(\.|$)", re.I)


def role_of(name: str, kind: str, *, is_output: bool = False) -> str:
    """The role of one module. ``is_output`` marks the model's output embedding (the LM head)."""
    if kind == "embedding":
        return "embedding"
    if is_output:
        return "lm_head"
    leaf = name.rsplit(".", 1)[-1].lower()
    parent = name.rsplit(".", 1)[0] if "." in name else ""
    in_attn = bool(_ATTN_PARENT.search(parent))
    # Names whose meaning depends on the parent: output projections.
    if leaf in ("c_proj", "dense", "wo", "proj", "out"):
        if in_attn:
            return "attn_o"
        if parent.lower().endswith("intermediate"):  # BERT: intermediate.dense is the up projection
            return "mlp_up"
        if _MLP_PARENT.search(parent) or leaf in ("c_proj", "wo"):
            return "mlp_down"
        return "other"
    role = _LEAF_ROLES.get(leaf)
    if role is None:
        return "other"
    # A q/k/v leaf outside any attention block (rare) stays "other" rather than guessing.
    if role.startswith("attn_") and not in_attn and leaf in ("q", "k", "v", "o"):
        return "other"
    return role
