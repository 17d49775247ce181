"""Training-memory estimate of one LoRA step, term by term, from the anatomy alone (no torch).

The peak of a step is reached at the start of the backward pass, when every tensor autograd saved
in the forward is still alive and the loss gradient over the vocabulary is being formed:

    peak = frozen weights + adapter weights + optimizer states + saved activations (all layers)
         + logits and their gradient + small shared tensors + overhead

(the gradients come later in the backward, when the logits' memory is already free; with a tiny
vocabulary or checkpointing the peak can move into a block's backward, where they do count).

Activations are counted the way PyTorch keeps them, not by a generic rule of thumb: Korthikanti
et al. [2205.05198] count ``s·b·h·(34 + 5·a·s/h)`` for full fine-tuning of a GeLU model in 16 bit,
but with frozen base weights a linear layer saves nothing for its weight gradient, so under LoRA
most of those terms vanish and others appear (the adapters' inputs, fp32 casts). The rules below
were derived by reading the autograd formulas (``derivatives.yaml``), transformers' and PEFT's
forward code, and checked op by op with :class:`loratune.measure.PeakMemory` on the CPU
(see ``bench/memory_accuracy.py``). ``t = batch·seq`` tokens, ``d`` the compute dtype's bytes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from loratune.anatomy.targets import resolve, task_modules_to_save
from loratune.anatomy.types import ATTENTION_ROLES, ENCODER_TYPES, AdaptableModule, Anatomy
from loratune.budget.params import ParamBudget, count_params
from loratune.budget.spec import AdapterSpec
from loratune.errors import ConfigError
from loratune.units import check_count, fmt_bytes

DTYPES = {"fp32": 4, "bf16": 2, "fp16": 2}
QUANTS = ("none", "8bit", "4bit")
OPTIMIZERS = ("adamw", "adamw8bit", "sgd")
DEVICES = ("cpu", "cuda")
ATTN_IMPLS = ("sdpa", "eager")

# Families whose blocks use LayerNorm (saves its input in the compute dtype) instead of RMSNorm
# (transformers' LlamaRMSNorm upcasts to fp32 and saves that fp32 copy).
_LAYERNORM_TYPES = frozenset(
    {"gpt2", "bert", "falcon", "gpt_neox", "opt", "phi", "gptj", "bloom", "roberta"} | ENCODER_TYPES
)
# GPT-2's default activation "gelu_new" is written in Python (transformers.activations.NewGELUActivation):
# 0.5·x·(1 + tanh(c·(x + 0.044715·x³))) keeps 4 tensors of the MLP width (x, tanh, 0.5·x, 1 + tanh).
_PY_GELU_TYPES = frozenset({"gpt2"})

# CUDA context (driver + cuBLAS/cuDNN handles) is outside the caching allocator's counters; PyTorch's
# "CUDA semantics / memory management" notes put it at several hundred MB. Unmeasured here (no GPU):
# a conventional 512 MiB plus 10 % allocator slack (reserved − allocated) on the allocated peak.
CUDA_CONTEXT_BYTES = 512 * 2**20
CUDA_SLACK = 0.10


# Beyond these a value is a typo or an overflow, not a training step: no model reads 16M tokens at once,
# and a micro-batch of a million sequences fits no device.
MAX_SEQ_LEN = 1 << 24
MAX_BATCH = 1 << 20


@dataclass(frozen=True)
class MemorySettings:
    """How a step runs: the knobs that change its memory, not the adapter itself."""

    batch_size: int = 1
    seq_len: int = 512
    dtype: str = "bf16"
    quant: str = "none"
    grad_checkpointing: bool = False
    optimizer: str = "adamw"
    device: str = "cuda"
    attn_impl: str = "sdpa"
    # torch.autocast in ``dtype`` around the forward (transformers' Trainer with bf16=True/fp16=True) over
    # a base stored in that dtype. Off: loratune's own trial loop, which runs the 16-bit base as is.
    autocast: bool = False

    def __post_init__(self) -> None:
        check_count(self.batch_size, "batch size (--batch-size)", MAX_BATCH, "use e.g. --batch-size 8")
        check_count(self.seq_len, "sequence length (--seq-len)", MAX_SEQ_LEN, "use e.g. --seq-len 512")
        _choice(self.dtype, tuple(DTYPES), "dtype")
        _choice(self.quant, QUANTS, "quant")
        _choice(self.optimizer, OPTIMIZERS, "optimizer")
        _choice(self.device, DEVICES, "device")
        _choice(self.attn_impl, ATTN_IMPLS, "attention implementation")
        if self.autocast and self.dtype == "fp32":
            raise ConfigError(
                "autocast over fp32 weights (classic AMP) is not modeled", "store the base in bf16: --dtype bf16"
            )
        # A quantized base on the CPU is allowed: bitsandbytes >= 0.50 runs 4-bit/8-bit layers there too.

    @property
    def tokens(self) -> int:
        return self.batch_size * self.seq_len

    def replace(self, **changes: object) -> MemorySettings:
        return MemorySettings(**{**asdict(self), **changes})  # type: ignore[arg-type]


def _choice(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {what} {value!r}", f"use one of {', '.join(allowed)}")


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per term at the step's peak. ``activations_bytes`` is the sum of the five activation
    terms (or, with checkpointing, the stored layer inputs plus one recomputed layer). ``total_bytes``
    is the sum of the other ``*_bytes`` terms, counting ``gradients_alive_bytes`` (those that exist at
    the peak) rather than ``gradients_bytes`` (all of them, once backward is done)."""

    weights_bytes: int
    trainable_bytes: int
    gradients_bytes: int
    gradients_at_peak: bool
    gradients_alive_bytes: int
    optimizer_bytes: int
    attention_activations_bytes: int
    mlp_activations_bytes: int
    norm_activations_bytes: int
    lora_activations_bytes: int
    dora_activations_bytes: int
    checkpoint_bytes: int
    activations_bytes: int
    logits_bytes: int
    logits_grad_bytes: int
    backward_transient_bytes: int
    other_bytes: int
    overhead_bytes: int
    total_bytes: int
    peak_phase: str
    # One full (last) layer's saved activations by kind, without checkpointing: what each layer adds.
    per_layer: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, int | str | bool]:
        return asdict(self)

    def terms(self) -> list[tuple[str, int, str]]:
        """(label, bytes, explanation) rows for a table."""
        return [
            ("frozen weights", self.weights_bytes, "base model in its dtype (or quantized)"),
            ("adapter weights", self.trainable_bytes, "trainable params, fp32"),
            (
                "gradients alive at the peak",
                self.gradients_alive_bytes,
                f"fp32, {fmt_bytes(self.gradients_bytes)} in all once backward is done (none after zero_grad)",
            ),
            ("optimizer states", self.optimizer_bytes, "AdamW m and v (fp32), 8-bit: 2 B, SGD: 0"),
            ("activations: attention", self.attention_activations_bytes, "q, k, v, output (+ scores if eager)"),
            ("activations: MLP", self.mlp_activations_bytes, "SwiGLU 3 tensors / GeLU 1–4 of width i"),
            ("activations: norms", self.norm_activations_bytes, "RMSNorm fp32 copy / LayerNorm input"),
            ("activations: LoRA", self.lora_activations_bytes, "dropout copy + mask of x, A's output"),
            ("activations: DoRA", self.dora_activations_bytes, "base and LoRA outputs, fp32 weight copy"),
            ("checkpointed inputs", self.checkpoint_bytes, "one layer input per layer (checkpointing)"),
            ("logits", self.logits_bytes, "log-softmax output over the vocabulary, fp32"),
            ("logits gradient", self.logits_grad_bytes, "its gradient and the incoming one, fp32"),
            ("backward transients", self.backward_transient_bytes, "a block's gradients in flight (tiny vocab)"),
            ("other", self.other_bytes, "input ids, labels, RoPE cos/sin"),
            ("framework overhead", self.overhead_bytes, "CUDA context + allocator slack"),
        ]


@dataclass(frozen=True)
class _LayerActs:
    attention: int = 0
    mlp: int = 0
    norm: int = 0
    lora: int = 0
    dora: int = 0

    @property
    def total(self) -> int:
        return self.attention + self.mlp + self.norm + self.lora + self.dora

    def __add__(self, o: _LayerActs) -> _LayerActs:
        return _LayerActs(
            self.attention + o.attention, self.mlp + o.mlp, self.norm + o.norm, self.lora + o.lora, self.dora + o.dora
        )


def weight_bytes(anatomy: Anatomy, settings: MemorySettings) -> int:
    d = DTYPES[settings.dtype]
    if settings.quant == "none":
        return anatomy.total_params * d
    quantized = sum(m.weight_params for m in anatomy.modules if m.kind != "embedding" and m.layer is not None)
    rows = sum(m.out_features for m in anatomy.modules if m.kind != "embedding" and m.layer is not None)
    # QLoRA [2305.14314] §3: NF4 (4 bits) + double-quantized absmax: 8/64 + 32/(64·256) ≈ 0.127 bits per param.
    nf4 = quantized * (4 + 8 / 64 + 32 / (64 * 256)) / 8
    # LLM.int8() [2208.07339]: 1 byte per weight + one fp32 scale per output row.
    int8 = quantized + 4 * rows
    q = nf4 if settings.quant == "4bit" else int8
    # PEFT's prepare_model_for_kbit_training (what a QLoRA user runs, and a trial) casts every parameter
    # bitsandbytes left unquantized (embeddings, norms, the head) from 16 bits to fp32: 4 bytes each
    # (measured by `budget --measure` on a 4-bit base: the 16-bit count came out ~20 % low on a tiny model).
    return int(q) + (anatomy.total_params - quantized) * 4


def optimizer_bytes(trainable: int, optimizer: str) -> int:
    # AdamW [1711.05101] keeps m and v per param (fp32 like the adapter: 8 B); 8-bit Adam [2110.02861] 2 B;
    # plain SGD without momentum keeps nothing.
    return trainable * {"adamw": 8, "adamw8bit": 2, "sgd": 0}[optimizer]


def _first_grad_point(anatomy: Anatomy, adapted: list[AdaptableModule]) -> tuple[int, bool]:
    """(layer, in_mlp): activations before the first adapted module need no grad and are not saved."""
    in_layers = [m for m in adapted if m.layer is not None]
    if not in_layers or len(in_layers) < len(adapted):
        return 0, False  # an embedding / non-layer module is adapted: treat everything as needing grad
    first = min(m.layer for m in in_layers if m.layer is not None)
    first_roles = {m.role for m in in_layers if m.layer == first}
    return first, not (first_roles & ATTENTION_ROLES)


def _lora_module_acts(
    m: AdaptableModule, r: int, spec: AdapterSpec, settings: MemorySettings, shared_input: bool, input_grad: bool
) -> int:
    """Saved by one LoRA module (peft/tuners/lora/layer.py Linear.forward): x is cast to the adapter's
    fp32 dtype; lora_A keeps its input (for A's gradient) and lora_B keeps A's output (t·r fp32).

    With dropout p > 0 lora_A's input is a new fp32 tensor, and when x itself needs a gradient the
    dropout's mask is kept too: on CUDA ``native_dropout``'s bool mask (1 B per element); on the CPU
    ``at::dropout`` builds the mask as a float tensor of x's dtype (fp32 after the cast, 4 B) and keeps
    it for ``x * mask``. With p = 0 lora_A keeps x: a new fp32 copy when the base runs in 16 bit, else
    the module's input itself, which q/k/v (and gate/up) share and which for o_proj is SDPA's kept
    output: counted once per layer, or not at all, via ``shared_input``."""
    t, d = settings.tokens, DTYPES[settings.dtype]
    mask = 0
    if spec.dropout > 0 and input_grad:
        mask = 4 if settings.device == "cpu" else 1
    if settings.autocast:
        # Under autocast lora_A casts its (fp32) input back to 16 bit and keeps that copy; A's output is 16-bit.
        return t * m.in_features * (d + mask) + t * r * d
    if spec.dropout > 0:
        x = t * m.in_features * (4 + mask)
    elif d == 4:
        x = 0 if shared_input else t * m.in_features * 4
    else:
        x = t * m.in_features * 4
    return x + t * r * 4


def _dora_module_acts(m: AdaptableModule, spec: AdapterSpec, settings: MemorySettings) -> int:
    """DoRA's extra (peft/tuners/lora/dora.py DoraLinearLayer.forward, [2402.09353]): the products
    (m/‖W‖ − 1)·base and (m/‖W‖)·lora keep both operands, i.e. the base and LoRA outputs (t·out).
    With dropout > 0 PEFT recomputes the base output from the dropped fp32 x with ``weight.to(x.dtype)``,
    so F.linear keeps that fp32 copy of W (a new tensor when the base is 16-bit or quantized); with p = 0 it reuses
    the base layer's output (dtype d)."""
    t, d = settings.tokens, DTYPES[settings.dtype]
    if settings.autocast:
        # Autocast runs F.linear and the adapters in 16 bit: base and LoRA outputs in d, and (p > 0) the
        # 16-bit cast of W that F.linear keeps (measured: x's 16-bit copy is kept once, by lora_A).
        if spec.dropout > 0:
            return t * m.out_features * d * 2 + m.weight_params * d
        return t * m.out_features * d * 2
    lora_out = t * m.out_features * 4
    if spec.dropout > 0:
        base = t * m.out_features * 4
        # A quantized base is dequantized to a new tensor whatever the compute dtype.
        w_copy = m.weight_params * 4 if d != 4 or settings.quant != "none" else 0
    else:
        base = t * m.out_features * d
        w_copy = 0
    return lora_out + base + w_copy


def _norm_bytes(anatomy: Anatomy, settings: MemorySettings) -> int:
    t, d, h = settings.tokens, DTYPES[settings.dtype], anatomy.facts.hidden_size
    if settings.autocast and is_encoder_classifier(anatomy):
        # layer_norm autocasts to fp32: the residual stream, and so every LayerNorm's input, is fp32.
        return t * h * 4 + 8 * t
    if anatomy.model_type in _LAYERNORM_TYPES:
        # LayerNorm (native_layer_norm): its input in dtype d, plus mean and rstd (2·t fp32).
        return t * h * d + 8 * t
    # RMSNorm (transformers LlamaRMSNorm): x.float() is kept by pow and mul (a new fp32 copy when d = 2,
    # the residual itself when d = 4), plus rsqrt's output (t fp32).
    return t * h * 4 + 4 * t


def _attention_bytes(anatomy: Anatomy, settings: MemorySettings, cache: bool = True) -> int:
    f = anatomy.facts
    t, b, s, d = settings.tokens, settings.batch_size, settings.seq_len, DTYPES[settings.dtype]
    a, g, hd = f.num_attention_heads, f.num_key_value_heads, f.head_dim
    fused = any(m.role == "attn_qkv" for m in anatomy.modules)
    # transformers builds a DynamicCache in training too (config.use_cache defaults to True): the cache
    # concatenates k and v into new tensors, and attention keeps those (t·g·hd each). q is RoPE's new
    # output (t·a·hd); GPT-2's q is a view of c_attn's output, which keeps that whole t·(a+2g)·hd tensor.
    q = t * (a + 2 * g) * hd * d if fused else t * a * hd * d
    # Without the cache (checkpointing) separate projections still hand RoPE's k and v_proj's output
    # (same sizes) to attention; GPT-2's k and v stay views of c_attn's output.
    kv = 2 * t * g * hd * d if cache or not fused else 0
    if settings.attn_impl == "sdpa":
        # SDPA's flash kernel (CPU and CUDA) keeps q, k, v, its output and the log-sum-exp (b·a·s fp32)
        # [FlashAttention 2205.14135]: no s² term.
        return q + kv + t * a * hd * d + b * a * s * 4
    # Eager attention: repeat_kv copies k and v to a heads (GQA), q·kᵀ keeps q and k, softmax keeps its
    # fp32 probabilities, the cast back to d and probs·v keep the probs in d and v: the 5·a·s² term of
    # [2205.05198] (there 2 B scores + 2 B softmax + 1 B dropout mask) becomes (4 + d)·a·s² here.
    rep = 2 * t * (a - g) * hd * d
    probs = b * a * s * s * (4 + (d if d != 4 else 0))
    return q + kv + rep + probs


def _mlp_bytes(anatomy: Anatomy, settings: MemorySettings) -> int:
    f = anatomy.facts
    t, d, i = settings.tokens, DTYPES[settings.dtype], f.intermediate_size
    if f.mlp_kind == "swiglu":
        # Derived here (SwiGLU [2002.05202] is not in 2205.05198): with frozen gate/up/down nothing is kept
        # for weight gradients; silu(gate) keeps gate and silu·up keeps both operands: 3 tensors t·i.
        return 3 * t * i * d
    if anatomy.model_type in _PY_GELU_TYPES:
        # GPT-2's gelu_new in Python: x, tanh(·), 0.5·x and 1 + tanh(·) are kept: 4 tensors t·i.
        return 4 * t * i * d
    # F.gelu keeps its input only.
    return t * i * d


# ---- encoder classifiers (BERT family, ``…ForSequenceClassification``): bidirectional attention, no
# KV cache, no RoPE, post-LayerNorm blocks, a GELU MLP, the model's own dropouts on in training, and a
# pooler + small head instead of an LM head. Derived like the decoder rules from the autograd formulas
# and BertLayer's forward (transformers models/bert/modeling_bert.py), checked with PeakMemory
# (bench/memory_accuracy.py, the encoder rows).


def is_encoder_classifier(anatomy: Anatomy) -> bool:
    return anatomy.model_type in ENCODER_TYPES and bool(task_modules_to_save(anatomy))


def num_labels(anatomy: Anatomy) -> int:
    """Outputs of the classifier head (its last linear), 0 when the model is no classifier."""
    heads = task_modules_to_save(anatomy)
    outs = [m.out_features for m in anatomy.modules if any(m.name.split(".")[0].endswith(h) for h in heads)]
    return outs[-1] if outs else 0


def _dropout_mask_bytes(settings: MemorySettings) -> int:
    # CPU: at::dropout multiplies by a mask tensor of the input's dtype and keeps it; CUDA: native_dropout's bool.
    return DTYPES[settings.dtype] if settings.device == "cpu" else 1


def _encoder_attention_bytes(anatomy: Anatomy, settings: MemorySettings) -> int:
    """Self-attention of one encoder layer. q·kᵀ keeps q (scaled: a new tensor) and k, probs·v keeps v:
    4 tensors t·h. With attention dropout in training (BERT: 0.1) SDPA cannot use its fused kernel and
    runs the math path, like eager attention: the fp32-width softmax output, the dropout mask and the
    dropped probabilities are kept, 3 tensors b·a·s² [cf. 2205.05198's 5·a·s²/h, which counts 16-bit
    scores, softmax and a 1-byte mask]. Without dropout SDPA's flash kernel keeps q, k, v, out and the
    log-sum-exp (b·a·s fp32) and no s² term. The output dropout (after attention.output.dense) keeps its mask."""
    f = anatomy.facts
    t, b, s, d = settings.tokens, settings.batch_size, settings.seq_len, DTYPES[settings.dtype]
    h, a = f.hidden_size, f.num_attention_heads
    out_mask = t * h * _dropout_mask_bytes(settings) if f.hidden_dropout > 0 else 0
    if settings.attn_impl == "sdpa" and f.attention_dropout == 0:
        return 4 * t * h * d + b * a * s * 4 + out_mask
    probs = b * a * s * s * d * (3 if f.attention_dropout > 0 else 1)
    if settings.autocast:
        # softmax autocasts to fp32: its output and the dropout mask are fp32; probs·v keeps a 16-bit cast of
        # the dropped probabilities, and (measured: 2 more bytes per element, b·s fits linear in s²) one more
        # 16-bit s² tensor is kept on the way.
        probs = b * a * s * s * ((4 + 4 + 2 * d) if f.attention_dropout > 0 else 4 + d)
    return 4 * t * h * d + probs + out_mask


def _encoder_mlp_bytes(anatomy: Anatomy, settings: MemorySettings) -> int:
    """GELU keeps its input (t·i, erf form: F.gelu); the output dropout keeps its mask (t·h)."""
    f = anatomy.facts
    t, d = settings.tokens, DTYPES[settings.dtype]
    mask = t * f.hidden_size * _dropout_mask_bytes(settings) if f.hidden_dropout > 0 else 0
    return t * f.intermediate_size * d + mask


def _input_needs_grad(m: AdaptableModule, layer: int, first: int, first_in_mlp: bool) -> bool:
    """Does the module's input carry a gradient? Not before the first adapted module (the embeddings
    are frozen): in the first adapted layer the q/k/v (or MLP-in) inputs come straight from the norm."""
    if layer > first:
        return True
    if first_in_mlp:
        return m.role == "mlp_down"
    return m.role not in ("attn_q", "attn_k", "attn_v", "attn_qkv")


_INPUT_GROUP = {
    "attn_q": "qkv",
    "attn_k": "qkv",
    "attn_v": "qkv",
    "attn_qkv": "qkv",
    "mlp_gate": "mlp_in",
    "mlp_up": "mlp_in",
}


def _per_layer(
    anatomy: Anatomy, spec: AdapterSpec, settings: MemorySettings, pb: ParamBudget, cache: bool = True
) -> list[_LayerActs]:
    by_name = anatomy.by_name()
    adapted = [by_name[m.name] for m in pb.modules if m.name in by_name]
    ranks = {m.name: m.r for m in pb.modules}
    first, first_in_mlp = _first_grad_point(anatomy, adapted)
    encoder = is_encoder_classifier(anatomy)
    norm, attn, mlp = (
        _norm_bytes(anatomy, settings),
        _encoder_attention_bytes(anatomy, settings) if encoder else _attention_bytes(anatomy, settings, cache),
        _encoder_mlp_bytes(anatomy, settings) if encoder else _mlp_bytes(anatomy, settings),
    )
    out: list[_LayerActs] = []
    for layer in range(anatomy.num_layers):
        if layer < first:
            out.append(_LayerActs())  # nothing upstream needs a gradient: autograd keeps nothing
            continue
        if encoder:
            # post-LN blocks: both LayerNorms come after the first adapted module of the layer
            acts = (
                _LayerActs(mlp=mlp, norm=norm) if layer == first and first_in_mlp else _LayerActs(attn, mlp, 2 * norm)
            )
        elif layer == first and first_in_mlp:
            acts = _LayerActs(mlp=mlp)  # attention and both norms run without grad in this layer
        elif layer == first:
            acts = _LayerActs(attention=attn, mlp=mlp, norm=norm)  # the input norm runs without grad
        else:
            acts = _LayerActs(attention=attn, mlp=mlp, norm=2 * norm)
        lora = dora = 0
        # Inputs already kept by something else: with SDPA, o_proj reads a view of the attention output
        # (the CPU/CUDA kernels lay it out as (b, s, a, hd), so transpose + contiguous copies nothing).
        seen = {"attn_o"} if settings.attn_impl == "sdpa" else set()
        for m in (x for x in adapted if x.layer == layer):
            # q/k/v share one input and gate/up another: with p = 0 in fp32 lora_A keeps it once.
            key = _INPUT_GROUP.get(m.role, m.role)
            shared = key in seen
            seen.add(key)
            lora += _lora_module_acts(
                m, ranks[m.name], spec, settings, shared, _input_needs_grad(m, layer, first, first_in_mlp)
            )
            if spec.method == "dora":
                dora += _dora_module_acts(m, spec, settings)
        out.append(acts + _LayerActs(lora=lora, dora=dora))
    return out


def estimate_memory(
    anatomy: Anatomy, spec: AdapterSpec, settings: MemorySettings, param_budget: ParamBudget | None = None
) -> MemoryEstimate:
    """Peak bytes of one training step of ``spec`` on ``anatomy`` under ``settings``, term by term."""
    if settings.quant != "none" and not settings.autocast:
        # prepare_model_for_kbit_training casts every unquantized parameter (embeddings, norms, head) to fp32
        # and bitsandbytes returns each matmul in its input's dtype: without autocast the step's activations
        # are fp32 whatever the compute dtype (`budget --measure`, tiny 4-bit model on the CPU: -14 % → +0.2 %).
        settings = settings.replace(dtype="fp32")
    pb = param_budget or count_params(anatomy, spec, resolve(anatomy, spec.targets))
    f = anatomy.facts
    t, s, d = settings.tokens, settings.seq_len, DTYPES[settings.dtype]
    h, i = f.hidden_size, f.intermediate_size
    trainable = pb.trainable_params
    weights = weight_bytes(anatomy, settings)
    # PEFT keeps adapters in fp32 (get_peft_model's autocast_adapter_dtype=True upcasts 16-bit ones).
    adapter = trainable * 4
    grads = trainable * 4
    optim = optimizer_bytes(trainable, settings.optimizer)
    # The final norm before the head keeps its input like the others.
    final_norm = _LayerActs(norm=_norm_bytes(anatomy, settings))
    # transformers' ForCausalLMLoss upcasts logits to fp32; cross_entropy = log_softmax (keeps its t·V fp32
    # output) + nll_loss. Its backward holds log_softmax's output, the incoming gradient and the outgoing
    # one at once: 3·t·V·4 B, the largest moment of the step for any real vocabulary.
    logits = t * f.vocab_size * 4
    logits_grad = 2 * t * f.vocab_size * 4
    labels = num_labels(anatomy)
    if labels:
        # A classifier: no LM head. An encoder pools its first token (pooler dense + tanh: b·h, then the
        # head's dropout mask and input, b·h each) and has no final norm; a decoder's score head runs on
        # every position (t·labels) before the last real token is picked. The loss is over b·labels.
        pooled = 3 * settings.batch_size * h * 4 if is_encoder_classifier(anatomy) else t * labels * 4
        final_norm = _LayerActs(norm=pooled if is_encoder_classifier(anatomy) else final_norm.norm)
        logits = settings.batch_size * labels * 4
        logits_grad = 2 * logits
    # A block's backward holds a few gradients at once (silu·up: grads of both operands and of down's
    # input, t·i each, plus the residual's t·h fp32); this is the peak only when the vocabulary is tiny.
    # (measured: GeLU's backward holds two t·i gradients and two t·h ones).
    block_grad = 3 * t * i * d + t * h * 4 if f.mlp_kind == "swiglu" else 2 * t * i * d + 2 * t * h * 4
    # A post-LN encoder block's backward starts at its LayerNorm: the residual's gradient and LN's input
    # gradient (t·h fp32 each) are alive with every activation; the t·i gradients come only after the
    # MLP's own saved tensors are freed (measured: the peak is all activations + 2·t·h·4). Under
    # checkpointing (one recomputed layer alive) the t·i gradients do count.
    encoder_block_grad = 2 * t * h * 4 if is_encoder_classifier(anatomy) else block_grad
    # input ids and shifted labels (int64); RoPE cos and sin (seq·head_dim in d, shared by all layers).
    rope = 0 if anatomy.model_type in _LAYERNORM_TYPES else 2 * s * f.head_dim * d
    other = 2 * t * 8 + rope
    if labels:
        other = t * 8 + settings.batch_size * 8 + rope  # input ids, one label per row
    static = weights + adapter + optim + other
    # In a block's backward only the adapters of the blocks already walked back through have gradients:
    # at the last block, its own (the peak with a tiny vocabulary sits there).
    per_layer_params = pb.per_layer()
    last_grads = 4 * per_layer_params.get(anatomy.num_layers - 1, 0) + 4 * per_layer_params.get(None, 0)
    # Each phase: (activations alive, logits, logits gradient, backward transients, gradients alive).
    # Gradients: zero_grad(set_to_none=True) (the PyTorch ≥ 2.0 and Trainer default) frees them before
    # each forward and backward allocates them only as it reaches each adapter, after the loss phase.
    # Per-layer activations as kept without checkpointing (the report's per-layer row, and the sum
    # when checkpointing is off).
    layers = _per_layer(anatomy, spec, settings.replace(grad_checkpointing=False), pb)
    if settings.grad_checkpointing:
        # Full recomputation [Chen et al. 1604.06174; 2205.05198 §4]: each layer keeps only its input
        # (t·h·d); backward recomputes one layer at a time, with use_cache off (transformers turns it off
        # under checkpointing). The peak is the larger of the loss phase and the biggest layer's recompute.
        ckpt = anatomy.num_layers * t * h * d
        recomputed = _per_layer(anatomy, spec, settings.replace(grad_checkpointing=False), pb, cache=False)
        biggest = max(recomputed, key=lambda la: la.total) if recomputed else _LayerActs()
        phases = {
            "loss backward": (final_norm, logits, logits_grad, 0, 0),
            "layer recompute": (biggest, 0, 0, block_grad, last_grads),
        }
    else:
        ckpt = 0
        acts = sum(layers, _LayerActs())
        phases = {
            "loss backward": (acts + final_norm, logits, logits_grad, 0, 0),
            # the final norm's saved input is released before the blocks' backward starts
            "block backward": (acts, 0, 0, encoder_block_grad, last_grads),
        }
    phase, (acts, lg, lg_grad, transient, grads_alive) = max(
        phases.items(), key=lambda kv: kv[1][0].total + sum(kv[1][1:])
    )
    act_total = ckpt + acts.total
    last = layers[-1] if layers else _LayerActs()
    per_layer = {**asdict(last), "total": last.total}
    allocated = static + act_total + lg + lg_grad + transient + grads_alive
    overhead = CUDA_CONTEXT_BYTES + int(CUDA_SLACK * allocated) if settings.device == "cuda" else 0
    return MemoryEstimate(
        weights_bytes=weights,
        trainable_bytes=adapter,
        gradients_bytes=grads,
        gradients_at_peak=grads_alive > 0,
        gradients_alive_bytes=grads_alive,
        optimizer_bytes=optim,
        attention_activations_bytes=acts.attention,
        mlp_activations_bytes=acts.mlp,
        norm_activations_bytes=acts.norm,
        lora_activations_bytes=acts.lora,
        dora_activations_bytes=acts.dora,
        checkpoint_bytes=ckpt,
        activations_bytes=act_total,
        logits_bytes=lg,
        logits_grad_bytes=lg_grad,
        backward_transient_bytes=transient,
        other_bytes=other,
        overhead_bytes=overhead,
        total_bytes=allocated + overhead,
        peak_phase=phase,
        per_layer=per_layer,
    )
