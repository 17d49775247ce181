import math

import pytest
import torch

from loratune.trial.batching import collate
from loratune.trial.evaluate import exact_match, mean_loss, perplexity, token_f1
from loratune.trial.loss import split_decoder_head, token_loss_sum


@pytest.mark.parametrize("build", ["tiny_llama", "tiny_gpt2"])
def test_label_positions_only_loss_equals_the_models_own_loss(request, qa_examples, build):
    model = request.getfixturevalue(build)()
    batch = collate(qa_examples(4, seed=3), 512, pad_id=0)
    assert batch.attention_mask is not None  # mixed lengths: the padded path is exercised
    parts = split_decoder_head(model)
    assert parts is not None
    with torch.no_grad():
        fast, n = token_loss_sum(model, batch.input_ids, batch.labels, batch.attention_mask, parts)
        full, n_full = token_loss_sum(model, batch.input_ids, batch.labels, batch.attention_mask, None)
        hf = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss
    assert n == n_full == batch.label_tokens
    assert float(fast) == pytest.approx(float(full), rel=1e-5)
    assert float(fast) / n == pytest.approx(float(hf), rel=1e-5)


def test_uniform_model_has_perplexity_equal_to_vocab_size(tiny_vocab, qa_examples, tiny_llama):
    model = tiny_llama()
    with torch.no_grad():
        model.lm_head.weight.zero_()  # all logits 0 → p = 1/V for every token → loss ln V
    data = qa_examples(10)
    assert mean_loss(model, data, pad_id=0) == pytest.approx(math.log(tiny_vocab), rel=1e-6)
    assert perplexity(model, data, pad_id=0) == pytest.approx(tiny_vocab, rel=1e-5)


def test_mean_loss_is_token_weighted_not_batch_weighted(qa_examples, tiny_llama):
    model = tiny_llama()
    data = qa_examples(12, seed=5)
    one = mean_loss(model, data, pad_id=0, batch_size=1)
    many = mean_loss(model, data, pad_id=0, batch_size=12)
    assert one == pytest.approx(many, rel=1e-5)


def test_squad_style_exact_match_and_f1():
    assert exact_match("The  Answer.", "answer") == 1.0
    assert exact_match("an answer here", "answer") == 0.0
    # pred tokens {returns, a, json, string} → normalized {returns, json, string}; ref {json, string}
    # precision 2/3, recall 1 → F1 = 0.8
    assert token_f1("Returns a JSON string", "JSON string") == pytest.approx(0.8)
    assert token_f1("nothing alike", "JSON string") == 0.0
    assert token_f1("", "") == 1.0
