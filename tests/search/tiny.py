"""A tiny causal LM on disk (2 layers, hidden 32, SmolLM2's tokenizer) and a small QA file, so a real
search runs in seconds. Tests only."""

from __future__ import annotations

import json
from pathlib import Path


def make_tiny_model(directory: Path) -> Path:
    """A randomly initialised Llama-architecture model saved with ``save_pretrained`` (safetensors)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from loratune.models import resolve_source
    from loratune.models.weights import weights_dir

    if (directory / "config.json").is_file():
        return directory
    tok = AutoTokenizer.from_pretrained(str(weights_dir(resolve_source("smollm2-135m"))), local_files_only=True)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(directory, safe_serialization=True)
    tok.save_pretrained(directory)
    return directory


def make_qa_file(path: Path, n: int = 48) -> Path:
    rows = [{"prompt": f"What is {i} plus {i}?", "response": f"{i} plus {i} is {2 * i}."} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
