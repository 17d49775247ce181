"""One autograd node for a whole LoRA linear layer: ``y = x Wᵀ + c · (drop(x) Aᵀ) Bᵀ``.

Why: PEFT's ``lora.Linear`` runs base layer, dropout, ``lora_A``, ``lora_B``, ``* scaling`` and
``+`` as separate ops, and under bf16 autocast adds a cast of A and of B per call and a cast back
per gradient. Each op is a full pass over a [tokens, hidden] tensor plus dispatch, which on a small
model (SmolLM2: 576 wide, 120 adapted layers) costs as much as the LoRA matmuls themselves. Here
the scale ``c = scaling / (1 - p)`` is folded into B (a [out, r] tensor), the LoRA product is
accumulated into the base output by one ``addmm_``, and the backward is written out by hand:

    h  = drop(x) Aᵀ                      (drop(x) = x ⊙ keep, keep ~ Bernoulli(1 - p))
    y  = x Wᵀ + b + c · h Bᵀ
    ∂B = c · ∂yᵀ h                       ∂A = (c · ∂y B)ᵀ drop(x)
    ∂x = ∂y W + keep ⊙ ((c · ∂y B) A)    (W is frozen: no ∂W)

(Hu et al. 2021, arXiv:2106.09685, eq. 3; PEFT ``lora/layer.py`` ``Linear.forward`` for the
dropout-then-A order and ``scaling = lora_alpha / r``.) The parameters stay PEFT's own modules,
so saving, loading and the parameter count are unchanged; only the training ``forward`` is swapped,
and any call this path does not cover (eval mode, merged, disabled, several adapters, extra kwargs)
goes to PEFT's.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import nn

from loratune.trial.dropout import FastDropout, keep_mask


class LoraLinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        lora_a: torch.Tensor,
        lora_b: torch.Tensor,
        scaling: float,
        p: float,
    ) -> torch.Tensor:
        dtype = weight.dtype  # the frozen base's dtype is the compute dtype (bf16 or fp32)
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).to(dtype)
        c = scaling / (1.0 - p)
        a = lora_a.to(dtype)
        b = (lora_b * c).to(dtype)
        keep = keep_mask(x2.shape, p, x2.device) if p > 0 else None
        xd = x2 if keep is None else torch.where(keep, x2, 0.0)
        h = xd @ a.t()  # [N, r]
        y = torch.nn.functional.linear(x2, weight, bias)
        y.addmm_(h, b.t())
        ctx.save_for_backward(weight, a, b, xd, h, keep)
        ctx.c = c
        ctx.dtypes = (x.dtype, lora_a.dtype, lora_b.dtype)
        ctx.shape = shape
        return y.view(*shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        weight, a, b, xd, h, keep = ctx.saved_tensors
        x_dtype, a_dtype, b_dtype = ctx.dtypes
        g = grad_out.reshape(-1, grad_out.shape[-1]).to(weight.dtype)
        gh = g @ b  # c · ∂y B, [N, r]
        grad_a = (gh.t() @ xd).to(a_dtype)
        grad_b = (g.t() @ h).to(b_dtype).mul_(ctx.c)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = g @ weight
            if keep is None:
                grad_x.addmm_(gh, a)
            else:
                grad_x.add_(torch.where(keep, gh @ a, 0.0))
            grad_x = grad_x.view(ctx.shape).to(x_dtype)
        return grad_x, None, None, grad_a, grad_b, None, None


def fusable(module: nn.Module) -> bool:
    """A plain PEFT LoRA ``Linear`` over an ``nn.Linear``: one adapter, no DoRA/variant, no LoRA bias."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    if type(module) is not LoraLinear or getattr(module, "fan_in_fan_out", False):
        return False
    base = module.get_base_layer()
    if type(base) is not nn.Linear or len(module.lora_A) != 1 or any(t.requires_grad for t in base.parameters()):
        return False  # the hand-written backward assumes a frozen base
    name = next(iter(module.lora_A))
    dropout = module.lora_dropout[name]
    return (
        name not in module.lora_variant
        and module.lora_B[name].bias is None
        and type(dropout) in (nn.Dropout, FastDropout, nn.Identity)
        and getattr(dropout, "p", 0.0) < 1  # p = 1 zeroes the LoRA input; c = scaling/(1-p) would not exist
    )


def _fused_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    name = next(iter(self.lora_A))
    # Evaluation goes through PEFT's own forward, so every reported loss is the one a user gets
    # after loading the saved adapter with PEFT (the fused path rounds c·B to bf16 once, PEFT
    # rounds B and then the product: ~1e-3 relative apart in bf16).
    base = self.get_base_layer()
    covered = self.training and not (args or kwargs or self.disable_adapters or self.merged)
    # The backward gives the base no gradient: a base unfrozen after fusing goes through PEFT's path.
    frozen = not any(t.requires_grad for t in base.parameters())
    if not (covered and frozen) or list(self.active_adapters) != [name]:
        return type(self).forward(self, x, *args, **kwargs)
    dropout = self.lora_dropout[name]
    p = float(getattr(dropout, "p", 0.0)) if dropout.training else 0.0
    # Our own casts replace autocast's: the function decides the dtype of every product itself.
    with torch.autocast(device_type=x.device.type, enabled=False):
        return LoraLinearFunction.apply(
            x, base.weight, base.bias, self.lora_A[name].weight, self.lora_B[name].weight, self.scaling[name], p
        )


def use_fused_lora(peft_model: Any) -> int:
    """Route every fusable LoRA layer of ``peft_model`` through :class:`LoraLinearFunction`.

    Returns how many layers were switched; the rest keep PEFT's forward. Undone by unloading the
    adapter (the LoRA modules are replaced by their base layers) or by :func:`restore_forward`.
    """
    count = 0
    for module in peft_model.modules():
        if fusable(module):
            module.forward = types.MethodType(_fused_forward, module)
            count += 1
    return count


def restore_forward(peft_model: Any) -> None:
    for module in peft_model.modules():
        if "forward" in vars(module) and getattr(module.forward, "__func__", None) is _fused_forward:
            del module.forward
