import pytest
import torch

from loratune.trial.dropout import FastDropout


def test_drops_the_right_share_and_keeps_the_mean():
    torch.manual_seed(0)
    d = FastDropout(0.05).train()
    y = d(torch.ones(1000, 1000))
    # 10⁶ Bernoulli(0.05) draws: the observed share is within 0.05 ± 0.001 (±4.6 σ).
    assert (y == 0).float().mean().item() == pytest.approx(0.05, abs=1e-3)
    values = torch.unique(y).tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / 0.95)
    assert y.mean().item() == pytest.approx(1.0, abs=2e-3)


def test_reproducible_with_the_torch_seed_and_identity_in_eval():
    x = torch.randn(4, 7, 33)
    d = FastDropout(0.3).train()
    torch.manual_seed(1)
    a = d(x)
    torch.manual_seed(1)
    assert torch.equal(a, d(x))
    assert d.eval()(x) is x


def test_gradient_is_mask_times_scale():
    torch.manual_seed(2)
    x = torch.randn(50, 40, requires_grad=True)
    y = FastDropout(0.5).train()(x)
    y.sum().backward()
    kept = y.detach() != 0
    assert torch.equal(x.grad, kept.float() * 2.0)


def test_swapped_into_peft_lora_layers(tiny_llama):
    from peft import LoraConfig, get_peft_model

    from loratune.trial.dropout import use_fast_dropout

    pm = get_peft_model(tiny_llama(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.1))
    assert use_fast_dropout(pm) == 4  # 2 modules × 2 layers
    assert sum(isinstance(m, FastDropout) for m in pm.modules()) == 4
