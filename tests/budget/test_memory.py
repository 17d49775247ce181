"""The memory estimate, term by term, against numbers worked out by hand from the formulas' sources.

SmolLM2-135M (catalog, no weights): h=576, i=1536, a=9 heads, g=3 kv heads, head_dim=64,
V=49152, 30 layers, 134,515,008 params, SwiGLU, RMSNorm, tied embeddings.
GPT-2 small (catalog): h=768, i=3072, a=12, V=50257, 12 layers, LayerNorm, gelu_new, fused c_attn.
"""

from __future__ import annotations

import pytest

from loratune.anatomy.targets import TargetSpec
from loratune.budget import AdapterSpec
from loratune.budget.memory import CUDA_CONTEXT_BYTES, MemorySettings, estimate_memory, weight_bytes
from loratune.errors import ConfigError
from loratune.models import load_anatomy, resolve_source

SMOL = load_anatomy(resolve_source("smollm2-135m"))
GPT2 = load_anatomy(resolve_source("gpt2"))
L, H, FF, A, G, HD, V, P = 30, 576, 1536, 9, 3, 64, 49152, 134_515_008


def spec(targets: tuple[str, ...] | str = ("attention",), **kw: object) -> AdapterSpec:
    return AdapterSpec(targets=TargetSpec(target_modules=targets), **kw)  # type: ignore[arg-type]


CPU32 = MemorySettings(batch_size=1, seq_len=128, dtype="fp32", device="cpu")
T = 128  # tokens


def test_static_terms_fp32_attention_r8() -> None:
    e = estimate_memory(SMOL, spec(r=8), CPU32)
    assert e.weights_bytes == P * 4 == 538_060_032
    # q 576→576, k 576→192, v 576→192, o 576→576: 8·(1152 + 768 + 768 + 1152) = 30,720 per layer.
    trainable = 30 * 30_720
    assert e.trainable_bytes == e.gradients_bytes == trainable * 4 == 3_686_400
    assert e.optimizer_bytes == trainable * 8  # AdamW m + v in fp32
    assert e.overhead_bytes == 0  # nothing outside the tensors on the CPU


def test_activation_terms_fp32_attention_r8_dropout() -> None:
    e = estimate_memory(SMOL, spec(r=8, dropout=0.05), CPU32)
    # SDPA keeps q (t·a·hd), the cache's k and v copies (t·g·hd each), its output and lse (b·a·s fp32).
    attn = T * A * HD * 4 + 2 * T * G * HD * 4 + T * A * HD * 4 + 1 * A * T * 4
    assert attn == 791_040
    assert e.attention_activations_bytes == L * attn
    # SwiGLU: gate, silu(gate), up.
    assert e.mlp_activations_bytes == L * 3 * T * FF * 4 == 70_778_880
    # RMSNorm keeps t·h fp32 + rsqrt's t fp32; layer 0's input norm runs without grad: 2·30 − 1 + final = 60.
    assert e.norm_activations_bytes == 60 * (T * H * 4 + T * 4) == 17_725_440
    # LoRA, CPU dropout: fp32 output + fp32 mask (mask only when x needs grad) + A's output t·r.
    full = T * H * (4 + 4) + T * 8 * 4
    no_mask = T * H * 4 + T * 8 * 4  # layer 0's q, k, v read the norm output, which needs no grad
    assert e.lora_activations_bytes == 29 * 4 * full + 3 * no_mask + full == 70_385_664
    assert e.dora_activations_bytes == 0
    # One full layer, by kind.
    norm = T * H * 4 + T * 4
    assert e.per_layer == {
        "attention": attn,
        "mlp": 3 * T * FF * 4,
        "norm": 2 * norm,
        "lora": 4 * full,
        "dora": 0,
        "total": attn + 3 * T * FF * 4 + 2 * norm + 4 * full,
    }
    # fp32 log-softmax output, then its gradient and the incoming one.
    assert (e.logits_bytes, e.logits_grad_bytes) == (T * V * 4, 2 * T * V * 4)
    # ids + labels (int64), RoPE cos and sin (seq·head_dim).
    assert e.other_bytes == 2 * T * 8 + 2 * T * HD * 4
    # The peak is the loss backward; zero_grad(set_to_none=True) left no gradients allocated yet.
    assert e.peak_phase == "loss backward" and not e.gradients_at_peak
    parts = (e.weights_bytes + e.trainable_bytes + e.optimizer_bytes + e.activations_bytes) + (
        e.logits_bytes + e.logits_grad_bytes + e.other_bytes + e.backward_transient_bytes
    )
    # bench/memory_accuracy.py measured 807,305,672 B for this very step on the CPU.
    assert e.total_bytes == parts == 807_305_472


def test_cuda_dropout_mask_is_one_byte_and_overhead_is_added() -> None:
    cpu = estimate_memory(SMOL, spec(r=8), CPU32)
    gpu = estimate_memory(SMOL, spec(r=8), CPU32.replace(device="cuda"))
    # native_dropout's bool mask: 3 bytes less per element of the 29·4 + 1 masked inputs.
    assert cpu.lora_activations_bytes - gpu.lora_activations_bytes == (29 * 4 + 1) * T * H * 3
    allocated = gpu.total_bytes - gpu.overhead_bytes
    assert gpu.overhead_bytes == CUDA_CONTEXT_BYTES + int(0.10 * allocated)


def test_no_dropout_fp32_shares_inputs() -> None:
    e = estimate_memory(SMOL, spec(r=8, dropout=0.0), CPU32)
    # q/k/v's lora_A keep the norm output itself (once per layer); o's input is a view of SDPA's
    # kept output (nothing new); every lora_B keeps A's output.
    assert e.lora_activations_bytes == L * (T * H * 4 + 4 * T * 8 * 4)
    e = estimate_memory(SMOL, spec("all-linear", r=8, dropout=0.0), CPU32)
    # + gate/up share the post-attention norm output; down's input (silu·up, t·i) is new.
    assert e.lora_activations_bytes == L * (2 * T * H * 4 + T * FF * 4 + 7 * T * 8 * 4)
    # Eager attention copies its output for o_proj (transpose + contiguous).
    eager = estimate_memory(SMOL, spec(r=8, dropout=0.0), CPU32.replace(attn_impl="eager"))
    assert eager.lora_activations_bytes == L * (2 * T * H * 4 + 4 * T * 8 * 4)


def test_bf16_norms_stay_fp32_and_lora_casts() -> None:
    e = estimate_memory(SMOL, spec(r=8, dropout=0.0), CPU32.replace(dtype="bf16"))
    assert e.weights_bytes == P * 2
    assert e.mlp_activations_bytes == L * 3 * T * FF * 2
    assert e.norm_activations_bytes == 60 * (T * H * 4 + T * 4)  # LlamaRMSNorm upcasts
    # p = 0 in bf16: every lora_A keeps its own fp32 cast of x.
    assert e.lora_activations_bytes == L * 4 * (T * H * 4 + T * 8 * 4)


def test_dora_bf16_keeps_fp32_weight_copies() -> None:
    lora = estimate_memory(SMOL, spec(r=8), CPU32.replace(dtype="bf16"))
    dora = estimate_memory(SMOL, spec(r=8, method="dora"), CPU32.replace(dtype="bf16"))
    outs = 576 + 192 + 192 + 576
    weights = 576 * 576 + 576 * 192 + 576 * 192 + 576 * 576
    # base and LoRA outputs in fp32 (dropout > 0 recomputes the base from the fp32 x) + W.to(fp32).
    assert dora.dora_activations_bytes == L * (2 * T * outs * 4 + weights * 4)
    assert dora.trainable_bytes - lora.trainable_bytes == L * outs * 4  # magnitude vectors
    # In fp32 the weight is used as is: no copy.
    d32 = estimate_memory(SMOL, spec(r=8, method="dora"), CPU32)
    assert d32.dora_activations_bytes == L * 2 * T * outs * 4


def test_autocast_keeps_16bit_copies_for_the_adapters() -> None:
    s = CPU32.replace(dtype="bf16", autocast=True)
    e = estimate_memory(SMOL, spec(r=8, dropout=0.05), s)
    # lora_A keeps autocast's bf16 copy of x (2 B) + the CPU dropout's fp32 mask (4 B) where x needs grad;
    # A's output is bf16 (t·r·2).
    full = T * H * (2 + 4) + T * 8 * 2
    no_mask = T * H * 2 + T * 8 * 2
    assert e.lora_activations_bytes == 29 * 4 * full + 3 * no_mask + full
    d = estimate_memory(SMOL, spec(r=8, dropout=0.05, method="dora"), s)
    outs = 576 + 192 + 192 + 576
    weights = 576 * 576 + 576 * 192 + 576 * 192 + 576 * 576
    # base and LoRA outputs in bf16, plus F.linear's bf16 cast of W.
    assert d.dora_activations_bytes == L * (2 * T * outs * 2 + weights * 2)
    with pytest.raises(ConfigError, match="autocast over fp32"):
        CPU32.replace(autocast=True)


def test_gradient_checkpointing_keeps_layer_inputs() -> None:
    full = estimate_memory(SMOL, spec(r=8), CPU32)
    gc = estimate_memory(SMOL, spec(r=8), CPU32.replace(grad_checkpointing=True))
    assert gc.checkpoint_bytes == L * T * H * 4
    assert gc.peak_phase == "loss backward"  # V = 49152 ≫ one layer
    assert gc.activations_bytes == gc.checkpoint_bytes + T * H * 4 + T * 4  # + the final norm
    assert gc.total_bytes < full.total_bytes - 150_000_000


def test_eager_attention_adds_the_s_squared_scores() -> None:
    s = CPU32.replace(seq_len=512)
    sdpa = estimate_memory(SMOL, spec(r=8), s)
    eager = estimate_memory(SMOL, spec(r=8), s.replace(attn_impl="eager"))
    # per layer: fp32 probabilities a·s² (fp32: no separate cast) + k, v repeated to a heads − lse, output.
    t = 512
    eager_layer = t * A * HD * 4 + 2 * t * G * HD * 4 + 2 * t * (A - G) * HD * 4 + A * t * t * 4
    sdpa_layer = t * A * HD * 4 + 2 * t * G * HD * 4 + t * A * HD * 4 + A * t * 4
    assert eager.attention_activations_bytes - sdpa.attention_activations_bytes == L * (eager_layer - sdpa_layer)


def test_gpt2_layernorm_gelu_new_and_fused_qkv() -> None:
    e = estimate_memory(GPT2, spec(("c_attn",), r=8), CPU32)
    t, h, i, a = T, 768, 3072, 12
    # c_attn output (t·3h) + cache k, v copies + SDPA output + lse.
    assert e.attention_activations_bytes == 12 * (t * 3 * h * 4 + 2 * t * h * 4 + t * h * 4 + a * t * 4)
    assert e.mlp_activations_bytes == 12 * 4 * t * i * 4  # x, tanh, 0.5·x, 1 + tanh
    # LayerNorm keeps its input (dtype) + mean and rstd; layer 0's ln_1 runs without grad.
    assert e.norm_activations_bytes == 24 * (t * h * 4 + 8 * t)
    assert e.other_bytes == 2 * t * 8  # learned positions: no RoPE tables


def test_mlp_only_targets_skip_layer0_attention() -> None:
    e = estimate_memory(SMOL, spec(("mlp",), r=8), CPU32)
    attn = T * A * HD * 4 + 2 * T * G * HD * 4 + T * A * HD * 4 + A * T * 4
    assert e.attention_activations_bytes == 29 * attn
    # layer 0 keeps no norm; layers 1..29 two each; plus the final norm.
    assert e.norm_activations_bytes == (2 * 29 + 1) * (T * H * 4 + T * 4)


def test_quantized_weights() -> None:
    s4 = MemorySettings(dtype="bf16", quant="4bit")
    lin = sum(m.weight_params for m in SMOL.modules if m.kind != "embedding" and m.layer is not None)
    assert lin == 30 * (576 * 576 * 2 + 576 * 192 * 2 + 3 * 576 * 1536)
    # The rest (embeddings, norms) is fp32 after prepare_model_for_kbit_training: 4 bytes each.
    assert weight_bytes(SMOL, s4) == int(lin * (4 + 8 / 64 + 32 / (64 * 256)) / 8) + (P - lin) * 4
    rows = 30 * (576 + 192 + 192 + 576 + 1536 * 2 + 576)
    assert weight_bytes(SMOL, s4.replace(quant="8bit")) == lin + 4 * rows + (P - lin) * 4


def test_optimizers() -> None:
    base = spec(r=8)
    n = 30 * 30_720
    assert estimate_memory(SMOL, base, CPU32.replace(optimizer="adamw8bit")).optimizer_bytes == 2 * n
    assert estimate_memory(SMOL, base, CPU32.replace(optimizer="sgd")).optimizer_bytes == 0


def test_memory_grows_with_tokens_and_rank() -> None:
    totals = [estimate_memory(SMOL, spec(r=8), CPU32.replace(batch_size=b)).total_bytes for b in (1, 2, 4)]
    assert totals[0] < totals[1] < totals[2]
    # Doubling the tokens doubles everything but the static part.
    static = estimate_memory(SMOL, spec(r=8), CPU32)
    fixed = static.weights_bytes + static.trainable_bytes + static.optimizer_bytes
    rope = 2 * 128 * HD * 4  # cos/sin depend on seq_len only
    assert totals[1] - fixed - rope == 2 * (totals[0] - fixed - rope)
    r32 = estimate_memory(SMOL, spec(r=32), CPU32)
    assert r32.lora_activations_bytes - static.lora_activations_bytes == 30 * 4 * T * (32 - 8) * 4


def test_tiny_vocab_peaks_in_block_backward_with_gradients() -> None:
    from dataclasses import replace

    tiny_vocab = replace(SMOL, facts=replace(SMOL.facts, vocab_size=64))
    e = estimate_memory(tiny_vocab, spec(r=8), CPU32)
    assert e.peak_phase == "block backward" and e.gradients_at_peak
    assert (e.logits_bytes, e.logits_grad_bytes) == (0, 0)
    # Only the last layer's adapters have gradients yet (30,720 params), and the final norm is released.
    assert e.gradients_alive_bytes == 30_720 * 4
    assert e.norm_activations_bytes == 59 * (T * H * 4 + T * 4)
    # silu·up's backward: grads of both operands and of down's input (t·i each) + the residual's (t·h fp32).
    assert e.backward_transient_bytes == 3 * T * FF * 4 + T * H * 4


@pytest.mark.parametrize("vocab", [64, 49152])
def test_to_dict_has_bytes_terms_and_total(vocab: int) -> None:
    from dataclasses import replace

    anatomy = replace(SMOL, facts=replace(SMOL.facts, vocab_size=vocab))
    d = estimate_memory(anatomy, spec(), MemorySettings()).to_dict()
    grads = d["gradients_bytes"]
    assert d["gradients_at_peak"] == (d["gradients_alive_bytes"] > 0)
    assert d["total_bytes"] == sum(v for k, v in d.items() if k.endswith("_bytes") and k != "total_bytes") - grads - (
        d["attention_activations_bytes"]
        + d["mlp_activations_bytes"]
        + d["norm_activations_bytes"]
        + d["lora_activations_bytes"]
        + d["dora_activations_bytes"]
        + d["checkpoint_bytes"]
    )


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"batch_size": 0}, "batch size"),
        ({"seq_len": 0}, "sequence length"),
        ({"dtype": "fp8"}, "unknown dtype"),
        ({"quant": "3bit"}, "unknown quant"),
        ({"optimizer": "adam"}, "unknown optimizer"),
        ({"device": "tpu"}, "unknown device"),
    ],
)
def test_bad_settings_raise_config_error(kw: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as ei:
        MemorySettings(**kw)  # type: ignore[arg-type]
    assert ei.value.hint


def test_a_quantized_base_on_the_cpu_is_estimated() -> None:
    # bitsandbytes >= 0.50 runs on the CPU: a 4-bit CPU step is a real configuration (issue #12).
    assert MemorySettings(quant="4bit", device="cpu").quant == "4bit"
