import copy
import math

import pytest
import torch

from loratune.anatomy.targets import TargetSpec
from loratune.budget import AdapterSpec, count_params
from loratune.trial import TrainSettings, TrialRunner
from loratune.trial.evaluate import mean_loss

FAST = TrainSettings(learning_rate=1e-2, batch_size=8, max_steps=25, warmup_ratio=0.0, compute_dtype="fp32")


def _spec(method="lora", targets=("all",), **kw):
    return AdapterSpec(TargetSpec(targets, **kw.pop("t", {})), r=8, alpha=16, method=method, dropout=0.0, **kw)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("method", ["lora", "dora", "adalora"])
def test_each_method_learns_and_leaves_the_base_exactly_as_it_was(qa_examples, llama_runner, method):
    before = _state(llama_runner.model)
    train, val = qa_examples(64, seed=1), qa_examples(16, seed=2)
    res = llama_runner.run(_spec(method), FAST, train, val, progress=False)
    assert res.status == "ok", res.message
    assert res.steps == 25 and len(res.loss_curve) == 25
    # Every answer is the same 6 tokens: 25 steps cut the validation loss (5.84) to under 1.0 with
    # LoRA/DoRA (0.82/0.79 measured). AdaLoRA starts from E = 0 and prunes ranks as it goes: slower.
    assert res.val_loss_after < (0.95 if method == "adalora" else 0.2) * res.val_loss_before
    assert res.val_ppl_after == pytest.approx(math.exp(res.val_loss_after))
    # Trainable parameters are exactly what the budget stage predicts (AdaLoRA adds its E vectors too).
    assert res.trainable_params == count_params(llama_runner.anatomy, _spec(method)).trainable_params
    assert res.train_tokens > 0 and res.tokens_per_second > 0
    assert res.peak_memory_bytes and res.peak_memory_bytes > 0
    after = llama_runner.model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not hasattr(llama_runner.model, "peft_config")
    if method == "adalora":
        ranks = res.extra["adalora_final_ranks"]
        assert ranks and sum(ranks.values()) <= 4 * len(ranks)  # budget pruned to target_r = r/2 on average


def test_layers_to_transform_adapts_only_those_layers(qa_examples, llama_runner):
    spec = _spec(targets=("q_proj", "v_proj"), t={"layers_to_transform": (1,)})
    res = llama_runner.run(spec, TrainSettings(max_steps=1, compute_dtype="fp32"), qa_examples(8), [], progress=False)
    # 2 modules × r·(in + out): q 64→64, v 64→32 (2 KV heads × 16)
    assert res.trainable_params == 8 * (64 + 64) + 8 * (64 + 32)


def test_gpt2_conv1d_targets_train(qa_examples, tiny_gpt2, tiny_tokenizer):
    runner = TrialRunner((tiny_gpt2(), tiny_tokenizer), compute_dtype="fp32")
    res = runner.run(_spec(targets=("c_attn",)), FAST, qa_examples(32), qa_examples(8, seed=9), progress=False)
    assert res.status == "ok" and res.val_loss_after < res.val_loss_before


def test_adapter_round_trips_through_peft(qa_examples, tmp_path, llama_runner):
    from peft import PeftModel

    val = qa_examples(16, seed=2)
    out = tmp_path / "adapter"
    res = llama_runner.run(_spec("lora"), FAST, qa_examples(64, seed=1), val, save_dir=out, progress=False)
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert (out / "metrics.json").is_file() and res.adapter_dir == str(out)
    fresh = copy.deepcopy(llama_runner.model)
    loaded = PeftModel.from_pretrained(fresh, str(out))
    # The reloaded adapter reproduces the trained model's validation loss to float precision.
    assert mean_loss(loaded, val, pad_id=0) == pytest.approx(res.val_loss_after, rel=1e-5)
    assert mean_loss(loaded, val, pad_id=0) != pytest.approx(res.val_loss_before, rel=1e-3)


def test_nan_loss_stops_the_trial_with_status_diverged(qa_examples, tiny_llama, tiny_tokenizer):
    model = tiny_llama()
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[0, 0] = float("nan")
    runner = TrialRunner((model, tiny_tokenizer), compute_dtype="fp32")
    res = runner.run(_spec(), FAST, qa_examples(16), qa_examples(4, seed=7), progress=False)
    assert res.status == "diverged"
    assert "nan" in res.message and "step 1" in res.message
    assert res.steps == 0 and res.val_loss_after is None


def test_on_eval_can_prune(qa_examples, llama_runner):
    seen = []

    def prune_at_10(step, val_loss):
        seen.append((step, val_loss))
        return step >= 10

    settings = TrainSettings(learning_rate=5e-3, max_steps=40, eval_every=5, compute_dtype="fp32")
    res = llama_runner.run(
        _spec(), settings, qa_examples(64), qa_examples(8, seed=3), on_eval=prune_at_10, progress=False
    )
    assert res.status == "pruned" and res.steps == 10
    assert [s for s, _ in seen] == [5, 10]
    assert seen[1][1] < res.val_loss_before


def test_grad_accumulation_and_checkpointing_train(qa_examples, llama_runner):
    settings = TrainSettings(
        learning_rate=5e-3, batch_size=4, grad_accum=2, max_steps=3, grad_checkpointing=True, compute_dtype="fp32"
    )
    res = llama_runner.run(_spec(), settings, qa_examples(32), qa_examples(4), progress=False)
    assert res.status == "ok" and res.steps == 3
    assert res.extra["padding_fraction"] < 0.5
    assert not llama_runner.model.model.gradient_checkpointing  # switched off again for the next trial


def test_bf16_base_keeps_lora_weights_in_fp32_and_learns_like_fp32(qa_examples, tiny_llama, tiny_tokenizer):
    import dataclasses

    runner = TrialRunner((tiny_llama(), tiny_tokenizer), compute_dtype="bf16")
    assert next(runner.model.parameters()).dtype == torch.bfloat16
    train, val = qa_examples(64, seed=1), qa_examples(16, seed=2)
    bf16 = runner.run(_spec(), dataclasses.replace(FAST, compute_dtype="bf16"), train, val, progress=False)
    fp32 = runner.run(_spec(), FAST, train, val, progress=False)  # a second, fp32 copy of the same base
    assert bf16.status == fp32.status == "ok"
    assert bf16.extra["compute_dtype"] == "bf16" and fp32.extra["compute_dtype"] == "fp32"
    # Same data, seed and schedule: bf16 rounding of the frozen base moves the result only a little.
    assert bf16.val_loss_after == pytest.approx(fp32.val_loss_after, rel=0.15)
    assert bf16.val_loss_after < 0.2 * bf16.val_loss_before


def test_epochs_set_the_step_count(qa_examples, llama_runner):
    settings = TrainSettings(batch_size=8, epochs=2.0, compute_dtype="fp32")
    res = llama_runner.run(_spec(), settings, qa_examples(20), [], progress=False)
    assert res.steps == 6  # ceil(20 / 8) = 3 batches per epoch × 2
    assert res.val_loss_before is None and res.val_ppl_after is None


def test_tinytokenizer_is_enough_for_the_runner(tiny_tokenizer, qa_examples, tiny_llama):
    runner = TrialRunner((tiny_llama(), tiny_tokenizer), compute_dtype="fp32")
    settings = TrainSettings(batch_size=4, max_steps=2, compute_dtype="fp32")
    res = runner.run(_spec(), settings, qa_examples(8, seed=1), qa_examples(4, seed=2), progress=False)
    assert res.status == "ok" and res.steps == 2 and res.val_loss_after is not None


@pytest.mark.parametrize("method", ["dora", "adalora"])
def test_dora_and_adalora_run_under_bf16_autocast(qa_examples, tiny_llama, tiny_tokenizer, method):
    runner = TrialRunner((tiny_llama(), tiny_tokenizer), compute_dtype="bf16")
    attn = runner.model.config._attn_implementation
    res = runner.run(
        _spec(method),
        TrainSettings(learning_rate=1e-2, max_steps=6),
        qa_examples(32),
        qa_examples(8, seed=4),
        progress=False,
    )
    assert res.status == "ok" and res.val_loss_after < res.val_loss_before
    assert res.extra["attention"] == "eager"  # short rows: the faster kernel (speed.EAGER_MAX_TOKENS)
    assert runner.model.config._attn_implementation == attn  # and the model's own setting is back


def test_a_failure_while_setting_up_the_adapter_still_restores_the_base(qa_examples, llama_runner, monkeypatch):
    import loratune.trial.loop as loop

    before = _state(llama_runner.model)

    def broken(peft_model):
        raise RuntimeError("simulated failure after the adapter was attached")

    monkeypatch.setattr(loop, "use_fused_lora", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        llama_runner.run(_spec(), FAST, qa_examples(16, seed=1), None, progress=False)
    after = llama_runner.model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not any("lora_" in name for name, _ in llama_runner.model.named_modules())
    assert not hasattr(llama_runner.model, "peft_config")


def test_a_blown_up_last_step_is_diverged_and_nothing_is_saved(qa_examples, llama_runner, tmp_path):
    """One step at lr 1e30: the training loss of that step is finite, the weights after it are not.
    The trial says diverged (not ok with a NaN adapter) and saves nothing."""
    settings = TrainSettings(learning_rate=1e30, max_steps=1, warmup_ratio=0.0, compute_dtype="fp32", max_grad_norm=0)
    out = tmp_path / "adapter"
    res = llama_runner.run(_spec(), settings, qa_examples(8), qa_examples(4, seed=3), progress=False, save_dir=out)
    assert res.status == "diverged", res
    assert res.message and res.adapter_dir is None and not out.exists()
    assert not list(tmp_path.iterdir())  # no temp directory left beside it either
    assert not hasattr(llama_runner.model, "peft_config")
