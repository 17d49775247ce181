"""Tiny random models (2 layers, 64 wide) and token data that a few LoRA steps can visibly learn."""

from __future__ import annotations

import random

import pytest
import torch

from loratune.data import IGNORE_INDEX, TokenizedExample

VOCAB = 128


class TinyTokenizer:
    """Just what the trial code reads from a tokenizer: pad/eos ids and decode."""

    pad_token_id = 0
    eos_token_id = 1
    pad_token = "<pad>"
    eos_token = "</s>"

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(f"t{i}" for i in ids if not (skip_special_tokens and i in (0, 1)))


def tiny_llama(vocab: int = VOCAB, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab,
        max_position_embeddings=256,
        # 0.02 (the default) caps the logits of a 64-wide head near ±1.3, so no token can get more than
        # ~3 % probability and the loss floors at ~3.6 whatever LoRA learns; 0.2 lets learning show.
        initializer_range=0.2,
    )
    return LlamaForCausalLM(cfg).eval()


def tiny_gpt2(vocab: int = VOCAB, seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(
        GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=vocab, n_positions=256, initializer_range=0.2)
    ).eval()


def qa_examples(n: int, seed: int = 0, answer: tuple[int, ...] = (7, 8, 9, 10, 11, 1)) -> list[TokenizedExample]:
    """Random prompts of varied length, all answered with the same short sequence: easy to learn."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt = [rng.randint(20, VOCAB - 1) for _ in range(rng.randint(6, 30))]
        out.append(TokenizedExample(prompt + list(answer), [IGNORE_INDEX] * len(prompt) + list(answer)))
    return out


@pytest.fixture
def tiny_tokenizer():
    return TinyTokenizer()


@pytest.fixture
def llama_runner():
    from loratune.trial import TrialRunner

    return TrialRunner((tiny_llama(), TinyTokenizer()), compute_dtype="fp32")


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Tiny models gain nothing from threads, and on a shared machine a second thread can stall."""
    monkeypatch.setenv("LORATUNE_THREADS", "1")
