"""The real path on the real demo model: SmolLM2-135M, demo QA data, a few steps (< 30 s)."""

import math

import pytest
import torch

from loratune.anatomy.targets import TargetSpec
from loratune.budget import AdapterSpec
from loratune.data import demo_qa_path, demo_reference_path, load_examples, tokenize_examples
from loratune.trial import TrainSettings, TrialRunner
from loratune.trial.evaluate import mean_loss

pytestmark = pytest.mark.slow


def test_smollm2_trains_saves_and_reloads(tmp_path):
    from peft import PeftModel

    runner = TrialRunner("smollm2-135m", compute_dtype="bf16")
    tok = runner.tokenizer
    data = tokenize_examples(load_examples(demo_qa_path())[:40], tok, max_length=128).examples
    ref = tokenize_examples(load_examples(demo_reference_path(), format="text")[:4], tok, max_length=128).examples
    train, val = data[:32], data[32:]
    probe = runner.model.model.layers[29].self_attn.q_proj.weight.clone()
    spec = AdapterSpec(TargetSpec(("attention",)), r=8, alpha=16)
    settings = TrainSettings(learning_rate=5e-4, batch_size=4, max_steps=3, max_length=128)
    res = runner.run(spec, settings, train, val, ref, save_dir=tmp_path / "a", progress=False)
    assert res.status == "ok", res.message
    # 4 attention projections × 30 layers: r·(576+576)·2 (q, o) + r·(576+192)·2 (k, v) per layer
    assert res.trainable_params == 30 * 8 * (2 * 1152 + 2 * 768) == 921_600
    # An instruct model on short stdlib QA: perplexity of the answers well above 1 and far below vocab size.
    assert 1.5 < res.val_ppl_before < 1000 and math.isfinite(res.val_ppl_after)
    assert 1.5 < res.ref_ppl_before < 1000 and math.isfinite(res.ref_ppl_after)
    assert res.extra["logits_at_label_positions_only"] and res.peak_memory_bytes > 100e6
    assert torch.equal(probe, runner.model.model.layers[29].self_attn.q_proj.weight)
    loaded = PeftModel.from_pretrained(runner.model, str(tmp_path / "a"))
    runner.model.set_attn_implementation(res.extra["attention"])  # the kernel the trial measured with
    try:
        assert mean_loss(loaded, val, pad_id=tok.pad_token_id) == pytest.approx(res.val_loss_after, rel=1e-4)
    finally:
        loaded.unload()
        runner.model.set_attn_implementation("sdpa")
