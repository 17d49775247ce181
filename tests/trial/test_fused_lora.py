import copy

import pytest
import torch
from torch import nn

from loratune.trial.dropout import keep_mask
from loratune.trial.fused_lora import LoraLinearFunction, fusable, restore_forward, use_fused_lora


def _peft(model, **kw):
    from peft import LoraConfig, get_peft_model

    cfg = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj", "down_proj"], "lora_dropout": 0.0}
    cfg.update(kw)
    pm = get_peft_model(model, LoraConfig(**cfg))
    for name, p in pm.named_parameters():
        if "lora_B" in name:  # B starts at zero; a random B makes the LoRA path visible in outputs
            with torch.no_grad():
                p.normal_(0, 0.5)
    return pm


def _node_names(t):
    seen, todo, names = set(), [t.grad_fn], set()
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.add(type(fn).__name__)
        todo.extend(f for f, _ in fn.next_functions)
    return names


def _loss_and_grads(pm, ids):
    pm.zero_grad(set_to_none=True)
    out = pm(input_ids=ids, labels=ids)
    _loss_and_grads.nodes = _node_names(out.loss)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in pm.named_parameters() if p.requires_grad}
    return out.loss.detach(), out.logits.detach(), grads


def test_same_loss_logits_and_gradients_as_peft_in_fp32(tiny_llama):
    torch.manual_seed(0)
    pm = _peft(tiny_llama()).train()  # the fused path is the training path
    ids = torch.randint(2, 128, (3, 17))
    ref_loss, ref_logits, ref_grads = _loss_and_grads(pm, ids)
    assert "LoraLinearFunctionBackward" not in _loss_and_grads.nodes
    assert use_fused_lora(pm) == 6  # q, v, down × 2 layers
    loss, logits, grads = _loss_and_grads(pm, ids)
    assert "LoraLinearFunctionBackward" in _loss_and_grads.nodes
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-6)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
    assert grads.keys() == ref_grads.keys() and len(grads) == 12
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    restore_forward(pm)
    assert _loss_and_grads(pm, ids)[0].item() == ref_loss.item()


def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def test_bf16_base_with_fp32_lora_and_dropout_matches_peft_under_autocast(tiny_llama):
    # The trial's default: bf16 frozen base, fp32 LoRA (get_peft_model's autocast_adapter_dtype),
    # dropout on. FastDropout on PEFT's side draws the very masks the fused layer draws (same
    # generator, same element count, same order), so the two paths differ by bf16 rounding only.
    from peft.helpers import disable_input_dtype_casting

    from loratune.trial.dropout import use_fast_dropout

    pm = _peft(tiny_llama().to(torch.bfloat16), lora_dropout=0.2).train()
    use_fast_dropout(pm)
    assert next(p for n, p in pm.named_parameters() if "lora_A" in n).dtype == torch.float32
    ids = torch.randint(2, 128, (2, 11))
    with torch.autocast("cpu", dtype=torch.bfloat16), disable_input_dtype_casting(pm):
        torch.manual_seed(4)
        ref_loss, ref_logits, ref_grads = _loss_and_grads(pm, ids)
        use_fused_lora(pm)
        torch.manual_seed(4)
        loss, logits, grads = _loss_and_grads(pm, ids)
    assert "LoraLinearFunctionBackward" in _loss_and_grads.nodes
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-2)
    assert _rel(logits, ref_logits) < 0.02
    for name in grads:
        assert grads[name].dtype == torch.float32
        # measured ≤ 0.04 (bf16 rounding); dropping 1/(1-p) would be off by 0.25, another mask by ≥ 0.9
        assert _rel(grads[name], ref_grads[name]) < 0.1, name
    torch.manual_seed(5)  # another mask moves the gradients far more than rounding does
    other = _loss_and_grads(pm, ids)[2]
    assert max(_rel(other[n], ref_grads[n]) for n in grads) > 0.1


def test_dropout_matches_the_same_mask_applied_by_hand():
    torch.manual_seed(3)
    x = torch.randn(5, 7, 32, requires_grad=True)
    w, a, b = torch.randn(24, 32), torch.randn(4, 32, requires_grad=True), torch.randn(24, 4, requires_grad=True)
    p, scaling = 0.3, 2.0
    torch.manual_seed(9)
    y = LoraLinearFunction.apply(x, w, None, a, b, scaling, p)
    y.square().sum().backward()
    got = (x.grad.clone(), a.grad.clone(), b.grad.clone())
    x.grad = a.grad = b.grad = None
    torch.manual_seed(9)
    keep = keep_mask((35, 32), p).view(5, 7, 32)  # the same draw from the same generator state
    ref = x @ w.t() + (torch.where(keep, x / (1 - p), 0.0) @ a.t()) @ b.t() * scaling
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    ref.square().sum().backward()
    for g, r in zip(got, (x.grad, a.grad, b.grad), strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)


def test_eval_mode_is_peft_forward_and_training_drops_out(tiny_llama):
    pm = _peft(tiny_llama(), lora_dropout=0.5)
    ids = torch.randint(2, 128, (2, 9))
    with torch.no_grad():
        before = pm.eval()(input_ids=ids).logits
        use_fused_lora(pm)
        assert torch.equal(pm(input_ids=ids).logits, before)  # eval: PEFT's own forward, bit for bit
        pm.train()
        assert not torch.equal(pm(input_ids=ids).logits, pm(input_ids=ids).logits)


def test_uncovered_layers_and_calls_keep_peft_forward(tiny_gpt2, tiny_llama):
    from peft import LoraConfig, get_peft_model

    gpt = get_peft_model(tiny_gpt2(), LoraConfig(r=4, target_modules=["c_attn"], fan_in_fan_out=True))
    assert use_fused_lora(gpt) == 0  # Conv1D base: PEFT's path
    dora = get_peft_model(tiny_llama(), LoraConfig(r=4, target_modules=["q_proj"], use_dora=True))
    assert use_fused_lora(dora) == 0
    pm = _peft(tiny_llama()).train()
    layer = pm.base_model.model.model.layers[0].self_attn.q_proj
    assert fusable(layer)
    use_fused_lora(pm)
    ids = torch.randint(2, 128, (2, 9))
    with torch.no_grad():
        fused = pm(input_ids=ids).logits
        with pm.disable_adapter():  # disabled adapters fall through to PEFT's forward
            base = pm(input_ids=ids).logits
    plain = copy.deepcopy(pm)
    restore_forward(plain)
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=ids).logits, fused, atol=1e-5)
        with plain.disable_adapter():
            assert torch.equal(plain(input_ids=ids).logits, base)


def test_a_trainable_base_layer_is_not_fused_even_when_unfrozen_later(tiny_llama):
    pm = _peft(tiny_llama()).train()
    layer = pm.base_model.model.model.layers[0].self_attn.q_proj
    layer.base_layer.weight.requires_grad_(True)
    assert not fusable(layer)
    layer.base_layer.weight.requires_grad_(False)
    assert use_fused_lora(pm) == 6
    layer.base_layer.weight.requires_grad_(True)  # after fusing: the call falls back to PEFT's path
    _loss_and_grads(pm, torch.randint(2, 128, (2, 9)))
    assert layer.base_layer.weight.grad is not None and layer.base_layer.weight.grad.abs().sum() > 0
    assert isinstance(layer.base_layer, nn.Linear)


def test_peft_features_the_fused_path_does_not_cover_stay_unfused(tiny_llama):
    from peft import AdaLoraConfig, LoraConfig, get_peft_model

    bias = get_peft_model(tiny_llama(), LoraConfig(r=4, target_modules=["q_proj"], lora_bias=True))
    assert use_fused_lora(bias) == 0
    two = _peft(tiny_llama())
    two.add_adapter("second", LoraConfig(r=2, target_modules=["q_proj"]))
    # q_proj now holds two adapters; v_proj and down_proj still one each
    assert use_fused_lora(two) == 4
    ada = get_peft_model(tiny_llama(), AdaLoraConfig(r=4, target_modules=["q_proj"], total_step=10))
    assert use_fused_lora(ada) == 0
    certain = get_peft_model(tiny_llama(), LoraConfig(r=4, target_modules=["q_proj"], lora_dropout=0.5))
    certain.base_model.model.model.layers[0].self_attn.q_proj.lora_dropout["default"].p = 1.0
    assert use_fused_lora(certain) == 1  # p = 1 (all dropped) keeps PEFT's forward


def test_keep_mask_edges():
    assert keep_mask((1000,), 0.0).all()
    assert not keep_mask((1000,), 0.999999).any()  # no int16 lane reaches the threshold: all dropped
    torch.manual_seed(0)
    per_lane = keep_mask((250_000, 4), 0.5).float().mean(dim=0)  # column k = lane k of every word
    assert torch.allclose(per_lane, torch.full((4,), 0.5), atol=0.005)  # the top lane too (sign bit drawn)


def test_gradient_checkpointing_recomputes_the_same_dropout_mask(tiny_llama):
    # Non-reentrant checkpointing re-runs each layer's forward in backward; torch restores the RNG
    # state first, so the fused layer must draw the identical mask or the gradients would be wrong.
    pm = _peft(tiny_llama(), lora_dropout=0.3).train()
    use_fused_lora(pm)
    ids = torch.randint(2, 128, (2, 15))
    torch.manual_seed(5)
    _, _, plain = _loss_and_grads(pm, ids)
    pm.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    torch.manual_seed(5)
    _, _, ckpt = _loss_and_grads(pm, ids)
    assert "LoraLinearFunctionBackward" in _loss_and_grads.nodes
    assert pm.get_base_model().model.gradient_checkpointing
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name], rtol=1e-5, atol=1e-6, msg=name)
    torch.manual_seed(6)  # and a different seed really gives different gradients
    _, _, other = _loss_and_grads(pm, ids)
    assert not torch.allclose(other[next(iter(other))], plain[next(iter(plain))])
