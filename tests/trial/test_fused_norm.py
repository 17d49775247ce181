import torch

from loratune.trial.fused_norm import fused_rms_norm, is_llama_rms_norm


def test_llama_norms_switch_with_identical_outputs_and_close_gradients(tiny_llama):
    model = tiny_llama().to(torch.bfloat16)
    ids = torch.randint(2, 128, (3, 13))
    with torch.no_grad():
        for norm in (m for m in model.modules() if type(m).__name__ == "LlamaRMSNorm"):
            norm.weight.normal_(1.0, 0.3)  # a non-unit weight, so the multiply order matters

    def run():
        embeds = model.model.embed_tokens(ids).detach().float().requires_grad_(True)
        out = model(inputs_embeds=embeds.to(torch.bfloat16)).logits
        out.float().square().mean().backward()
        return out.detach(), embeds.grad

    ref_out, ref_grad = run()
    with fused_rms_norm(model) as switched:
        assert switched == 5  # 2 per layer × 2 layers + the final norm
        out, grad = run()
    assert torch.equal(out, ref_out)  # bit-identical forward in bf16
    cos = torch.nn.functional.cosine_similarity(grad.flatten(), ref_grad.flatten(), dim=0)
    assert cos > 0.999
    assert not any("forward" in vars(m) for m in model.modules())  # restored on exit


def test_other_norm_formulas_are_left_alone():
    from transformers.models.gemma.modeling_gemma import GemmaRMSNorm
    from transformers.models.llama.modeling_llama import LlamaRMSNorm
    from transformers.models.olmo2.modeling_olmo2 import Olmo2RMSNorm
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm

    assert is_llama_rms_norm(LlamaRMSNorm) and is_llama_rms_norm(Qwen2RMSNorm)
    assert not is_llama_rms_norm(GemmaRMSNorm)  # (1 + weight)
    assert not is_llama_rms_norm(Olmo2RMSNorm)  # weight applied before the cast back
    assert not is_llama_rms_norm(torch.nn.LayerNorm)
