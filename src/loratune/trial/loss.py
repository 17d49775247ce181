"""The causal-LM loss, computing logits only at positions that carry a label.

The LM head is often the largest single matmul of a small model (SmolLM2-135M: 576 × 49,152 =
28 M weights against ~106 M in all 30 blocks), and QA data carries a loss only on the answer. So
the hidden states are gathered at label positions first and only those go through the head; the
full ``[batch, seq, vocab]`` logits tensor is never built. Same value as the model's own loss.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from loratune.data.types import IGNORE_INDEX

# Architectures whose causal-LM forward is exactly ``logits = lm_head(decoder(x))`` (no logit
# soft-capping or scaling), so splitting decoder and head gives the same logits.
PLAIN_HEAD_TYPES = frozenset(
    {"llama", "mistral", "mixtral", "qwen2", "qwen3", "gpt2", "phi3", "smollm3", "olmo", "olmo2", "starcoder2"}
)


def _causal_lm(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def split_decoder_head(model: Any) -> tuple[Any, Any] | None:
    """``(decoder, lm_head)`` when the fast path is exact for this model, else None."""
    lm = _causal_lm(model)
    if getattr(lm.config, "model_type", None) not in PLAIN_HEAD_TYPES:
        return None
    decoder = getattr(lm, getattr(lm, "base_model_prefix", ""), None)
    head = lm.get_output_embeddings()
    if decoder is None or not isinstance(head, torch.nn.Linear):
        return None
    return decoder, head


def token_loss_sum(
    model: Any,
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    attention_mask: torch.Tensor | None,
    parts: tuple[Any, Any] | None = None,
) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy (fp32, nats) over label positions, and how many there are."""
    shift_labels = labels[:, 1:]
    keep = shift_labels != IGNORE_INDEX
    n = int(keep.sum())
    if parts is not None:
        decoder, head = parts
        hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        logits = head(hidden[:, :-1][keep])
    else:
        out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        logits = out.logits[:, :-1][keep]
    loss = F.cross_entropy(logits.float(), shift_labels[keep], reduction="sum")
    return loss, n
