"""Read the anatomy off a live (usually meta-device) ``nn.Module``. Imports torch lazily."""

from __future__ import annotations

import re
from typing import Any

from loratune.anatomy.roles import role_of
from loratune.anatomy.targets import layer_index
from loratune.anatomy.types import ENCODER_TYPES, AdaptableModule, Anatomy, ArchFacts


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort names the way people read them: layer 2 before layer 10."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def arch_facts(config: Any, modules: list[AdaptableModule]) -> ArchFacts:
    """The numbers the memory estimate needs, from any transformers config."""
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = int(getattr(cfg, "hidden_size", 0) or getattr(cfg, "d_model", 0))
    heads = int(getattr(cfg, "num_attention_heads", 0) or getattr(cfg, "num_heads", 0) or 1)
    inter = (
        getattr(cfg, "intermediate_size", None)
        or getattr(cfg, "n_inner", None)
        or getattr(cfg, "d_ff", None)
        or getattr(cfg, "ffn_hidden_size", None)
        or 4 * hidden
    )
    kv = getattr(cfg, "num_key_value_heads", None)
    if kv is None:
        kv = 1 if getattr(cfg, "multi_query", False) else heads
    head_dim = getattr(cfg, "head_dim", None) or getattr(cfg, "d_kv", None) or hidden // heads
    gated = any(m.role == "mlp_gate" or m.suffix == "gate_up_proj" for m in modules)
    max_pos = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
    return ArchFacts(
        hidden_size=hidden,
        intermediate_size=int(inter),
        num_attention_heads=heads,
        num_key_value_heads=int(kv),
        head_dim=int(head_dim),
        vocab_size=int(getattr(cfg, "vocab_size", 0) or 0),
        mlp_kind="swiglu" if gated else "gelu",
        max_positions=int(max_pos) if max_pos else None,
        is_encoder_decoder=bool(getattr(config, "is_encoder_decoder", False)),
        **_encoder_dropouts(cfg),
    )


def _encoder_dropouts(cfg: Any) -> dict[str, float]:
    """BERT-family dropout probabilities (DistilBERT names them ``attention_dropout`` / ``dropout``)."""
    if str(getattr(cfg, "model_type", "")) not in ENCODER_TYPES:
        return {}
    attn = getattr(cfg, "attention_probs_dropout_prob", None)
    hidden = getattr(cfg, "hidden_dropout_prob", None)
    return {
        "attention_dropout": float(attn if attn is not None else getattr(cfg, "attention_dropout", 0.0) or 0.0),
        "hidden_dropout": float(hidden if hidden is not None else getattr(cfg, "dropout", 0.0) or 0.0),
    }


def anatomy_from_model(model: Any, *, source: str) -> Anatomy:
    """Every module LoRA can wrap, with role and shape; parameter counts for the rest."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    get_out = getattr(model, "get_output_embeddings", None)
    out_emb = get_out() if callable(get_out) else None
    output_name = next((n for n, m in model.named_modules() if out_emb is not None and m is out_emb), None)

    modules: list[AdaptableModule] = []
    module_params: dict[str, int] = {}
    containers: dict[str, str] = {}
    layer_numbers: set[int] = set()
    for name, mod in model.named_modules():
        if not name:
            continue
        n = sum(p.numel() for p in mod.parameters())
        if n:
            module_params[name] = n
        layer = layer_index(name)
        if layer is not None:
            layer_numbers.add(layer)
        if isinstance(mod, nn.Linear):
            kind, fin, fout, bias = "linear", mod.in_features, mod.out_features, mod.bias is not None
        elif isinstance(mod, Conv1D):
            # Conv1D stores weight as (in, out): GPT-2's c_attn weight is 768 x 2304.
            kind, fin, fout, bias = "conv1d", mod.weight.shape[0], mod.weight.shape[1], mod.bias is not None
        elif isinstance(mod, nn.Embedding):
            kind, fin, fout, bias = "embedding", mod.num_embeddings, mod.embedding_dim, False
        else:
            containers.setdefault(name.rsplit(".", 1)[-1], type(mod).__name__)
            continue
        modules.append(
            AdaptableModule(
                name=name,
                layer=layer,
                role=role_of(name, kind, is_output=name == output_name),
                in_features=int(fin),
                out_features=int(fout),
                kind=kind,
                bias=bool(bias),
            )
        )
    modules.sort(key=lambda m: natural_key(m.name))
    config = model.config
    tied = bool(getattr(config, "tie_word_embeddings", False)) and out_emb is not None
    if out_emb is not None:
        inp = model.get_input_embeddings()
        tied = inp is not None and getattr(inp, "weight", None) is getattr(out_emb, "weight", None)
    num_layers = (
        getattr(config, "num_hidden_layers", None)
        or getattr(config, "n_layer", None)
        or getattr(config, "num_layers", None)
        or (max(layer_numbers) + 1 if layer_numbers else 0)
    )
    return Anatomy(
        source=source,
        architecture=type(model).__name__,
        model_type=str(getattr(config, "model_type", "unknown")),
        num_layers=int(num_layers),
        total_params=sum(p.numel() for p in model.parameters()),
        modules=tuple(modules),
        facts=arch_facts(config, modules),
        tied_embeddings=tied,
        output_module=output_name,
        module_params=module_params,
        container_names=containers,
    )
