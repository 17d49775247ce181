"""A 4-bit / 8-bit base (bitsandbytes on the CPU): trains, records how it was loaded, and the saved
adapter reproduces the trial's validation loss on a freshly quantized base (QLoRA as a user writes it)."""

from __future__ import annotations

import json

import bitsandbytes  # noqa: F401  (a dependency in pyproject: missing is a failure, not a skip)
import pytest

from loratune.anatomy.targets import TargetSpec
from loratune.budget import AdapterSpec
from loratune.trial import TrainSettings, TrialRunner
from loratune.trial.evaluate import mean_loss

SPEC = AdapterSpec(TargetSpec(("q_proj", "v_proj")), r=4, alpha=8, dropout=0.0)
# 4-bit matmuls on the CPU are slower than dense ones: few short steps.
SETTINGS = TrainSettings(learning_rate=2e-2, batch_size=4, max_steps=12, warmup_ratio=0.0, compute_dtype="bf16")


def _runner(tiny_tokenizer, tiny_llama, quant: str) -> TrialRunner:
    return TrialRunner((tiny_llama(), tiny_tokenizer), compute_dtype="bf16", quant=quant, device="cpu")


def test_bnb_config_is_qlora_nf4_double_quant_bf16():
    import torch

    from loratune.models.quantized import bnb_config

    c = bnb_config("4bit")
    assert c.load_in_4bit and c.bnb_4bit_quant_type == "nf4" and c.bnb_4bit_use_double_quant
    assert c.bnb_4bit_compute_dtype == torch.bfloat16
    assert bnb_config("8bit").load_in_8bit and bnb_config("none") is None


def test_unknown_quant_is_a_config_error(tiny_tokenizer, tiny_llama):
    from loratune.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown --quant"):
        TrialRunner((tiny_llama(), tiny_tokenizer), quant="3bit")


def test_4bit_base_trains_and_its_adapter_reloads_on_a_4bit_base(tiny_tokenizer, tiny_llama, qa_examples, tmp_path):
    import bitsandbytes as bnb
    from peft import PeftModel

    from loratune.models.quantized import quant_of

    runner = _runner(tiny_tokenizer, tiny_llama, "4bit")
    assert quant_of(runner.model) == "4bit"
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in runner.model.modules())
    train, val = qa_examples(16, seed=1)[:8], qa_examples(8, seed=2)
    out = tmp_path / "adapter"
    res = runner.run(SPEC, SETTINGS, train, val, save_dir=out, progress=False)
    assert res.status == "ok", res.message
    assert res.val_loss_after < res.val_loss_before
    assert res.extra["quant"] == "4bit" and res.extra["device"] == "cpu"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["load"]["quant"] == "4bit"
    assert metrics["load"]["quantization_config"]["bnb_4bit_quant_type"] == "nf4"
    # The adapter is plain LoRA: its config names no quantization.
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert not any("quant" in key for key in adapter_config), adapter_config

    fresh = _runner(tiny_tokenizer, tiny_llama, "4bit").model  # the same weights quantized again (deterministic)
    loaded = PeftModel.from_pretrained(fresh, str(out))
    reloaded = mean_loss(loaded, val, pad_id=0, batch_size=SETTINGS.batch_size, max_length=SETTINGS.max_length)
    assert reloaded == pytest.approx(res.val_loss_after, rel=2e-3)
    assert res.val_loss_after < 0.97 * res.val_loss_before  # it learned: the match is not the base's loss


def test_8bit_base_trains_with_a_falling_loss(tiny_tokenizer, tiny_llama, qa_examples):
    runner = _runner(tiny_tokenizer, tiny_llama, "8bit")
    res = runner.run(SPEC, SETTINGS, qa_examples(16, seed=1)[:8], qa_examples(8, seed=2), progress=False)
    assert res.status == "ok", res.message
    assert res.extra["quant"] == "8bit"
    assert res.val_loss_after < res.val_loss_before


@pytest.mark.parametrize("quant", ["4bit", "8bit"])
def test_in_memory_quantization_equals_loading_through_bitsandbytes_config(tiny_llama, quant):
    """Random-weight shapes at real scale are quantized in memory (no 16 GB disk round trip): the same
    layers, state and loss as transformers' BitsAndBytesConfig path."""
    import torch

    from loratune.models.quantized import quant_of, quantize_in_memory, quantize_loaded

    loaded = quantize_loaded(tiny_llama(), quant, compute_dtype="bf16")
    in_memory = quantize_in_memory(tiny_llama(), quant, compute_dtype="bf16")
    assert quant_of(in_memory) == quant
    a, b = loaded.state_dict(), in_memory.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ids = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert float(in_memory(input_ids=ids, labels=ids).loss) == float(loaded(input_ids=ids, labels=ids).loss)
