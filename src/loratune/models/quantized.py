"""A quantized base, loaded the way a QLoRA user writes it: transformers' ``BitsAndBytesConfig``,
then PEFT's ``prepare_model_for_kbit_training``; LoRA/DoRA goes on top unchanged.

- 4bit: NF4 with double quantization and bf16 compute (QLoRA [2305.14314] §3);
- 8bit: LLM.int8 [2208.07339].

A quantized base is a property of the loaded model, not of the adapter: the adapter's config and its
exports are those of plain LoRA, plus the load flags (:func:`load_flags`, written into metrics.json
as ``load``). bitsandbytes ≥ 0.50 also runs on the CPU (slowly), so the tests train a tiny 4-bit model.
"""

from __future__ import annotations

from typing import Any

from loratune.errors import ConfigError

QUANTS = ("none", "8bit", "4bit")


def check_quant(quant: str) -> str:
    if quant not in QUANTS:
        raise ConfigError(f"unknown --quant {quant!r}", "use none, 8bit or 4bit")
    return quant


def check_bitsandbytes() -> None:
    """One ConfigError when bitsandbytes is missing (before any weights are read)."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--quant needs the bitsandbytes package, which is not installed", "pip install 'bitsandbytes>=0.50'"
        ) from None


def bnb_config(quant: str, compute_dtype: str = "bf16") -> Any:
    """The ``BitsAndBytesConfig`` for ``quant`` (None for ``none``)."""
    import torch
    from transformers import BitsAndBytesConfig

    check_quant(quant)
    if quant == "none":
        return None
    if quant == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[compute_dtype]
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
    )


def load_quantized(
    path: str, quant: str, *, compute_dtype: str = "bf16", device: str = "cpu", use_safetensors: bool | None = True
) -> Any:
    """``AutoModelForCausalLM.from_pretrained(path)`` quantized by bitsandbytes on ``device``, prepared
    for k-bit training (norms and head upcast to fp32, base frozen). Checkpointing stays the trial's
    choice (``--grad-checkpointing``), so ``prepare_model_for_kbit_training`` does not switch it on."""
    import torch
    from transformers import AutoModelForCausalLM

    check_bitsandbytes()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[compute_dtype]
    model: Any = AutoModelForCausalLM.from_pretrained(
        path,  # type: ignore[arg-type]
        quantization_config=bnb_config(quant, compute_dtype),
        dtype=dtype,
        device_map={"": device},
        local_files_only=True,
        use_safetensors=use_safetensors,
    )
    return prepare_for_kbit(model)


def quantize_loaded(model: Any, quant: str, *, compute_dtype: str = "bf16", device: str = "cpu") -> Any:
    """An in-memory model (tests, benches) quantized the same way: saved to a temporary directory and
    loaded back through :func:`load_quantized` (bitsandbytes quantizes while it loads)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="loratune-quant-") as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        quantized = load_quantized(tmp, quant, compute_dtype=compute_dtype, device=device)
    # Not the temporary directory: an adapter records its base's name (adapter_config.json).
    quantized.name_or_path = quantized.config._name_or_path = model.name_or_path
    return quantized


def quantize_in_memory(model: Any, quant: str, *, compute_dtype: str = "bf16", device: str = "cpu") -> Any:
    """Quantize an in-memory model's linear layers in place, without a round trip through disk: for
    random-weight shapes at real scale (``budget --measure``, bench/gpu_check.sh), where saving 16 GB
    of an 8B model only to load it back would take most of the run.

    The same layers transformers' bitsandbytes integration builds (``Linear4bit`` NF4 with double
    quantization / ``Linear8bitLt`` int8 without fp16 weights, threshold 6.0), every ``nn.Linear``
    except the output head (transformers keeps ``lm_head`` dense too), the same flags on the model
    (``is_loaded_in_4bit`` / ``is_loaded_in_8bit``, ``config.quantization_config``), then
    :func:`prepare_for_kbit`. Tested against :func:`quantize_loaded` on the CPU (same losses)."""
    import bitsandbytes as bnb
    import torch

    check_quant(quant)
    if quant == "none":
        return model
    compute = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[compute_dtype]
    # As from_pretrained(dtype=…) holds the dense weights before bitsandbytes quantizes them; buffers (RoPE's
    # inv_freq) stay as they are, as they do there.
    for p in model.parameters():
        p.data = p.data.to(compute)
    head = model.get_output_embeddings()
    target = torch.device(device)
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is not torch.nn.Linear or child is head:
                continue
            w, bias = child.weight.data, child.bias
            if quant == "4bit":
                new: Any = bnb.nn.Linear4bit(
                    child.in_features,
                    child.out_features,
                    bias=bias is not None,
                    compute_dtype=compute,
                    compress_statistics=True,
                    quant_type="nf4",
                    device="meta",
                )
                new.weight = bnb.nn.Params4bit(
                    w.to(compute), requires_grad=False, compress_statistics=True, quant_type="nf4"
                )
            else:
                new = bnb.nn.Linear8bitLt(
                    child.in_features,
                    child.out_features,
                    bias=bias is not None,
                    has_fp16_weights=False,
                    threshold=6.0,
                    device="meta",
                )
                # Int8Params quantizes only when moved *from the CPU* (bitsandbytes 0.50 ``Int8Params.to``), as
                # from_pretrained moves it: a weight already on the GPU hops through the CPU, one layer at a time.
                new.weight = bnb.nn.Int8Params(w.cpu(), requires_grad=False, has_fp16_weights=False)
            if bias is not None:
                new.bias = torch.nn.Parameter(bias.data.to(compute), requires_grad=False)
            new.train(child.training)
            setattr(module, child_name, new.to(target))  # moving is what quantizes (bitsandbytes)
            weight = getattr(module, child_name).weight
            if not (getattr(weight, "bnb_quantized", False) or weight.dtype == torch.int8):
                raise RuntimeError(f"bitsandbytes left {type(new).__name__} unquantized on {device}")
            del child, w
    model.is_loaded_in_4bit = quant == "4bit"
    model.is_loaded_in_8bit = quant == "8bit"
    model.config.quantization_config = bnb_config(quant, compute_dtype)
    return prepare_for_kbit(model)


def prepare_for_kbit(model: Any) -> Any:
    from peft import prepare_model_for_kbit_training

    # bitsandbytes 0.50, CPU with AVX512-BF16: the first eval-mode, no-grad forward of a ``Linear4bit``
    # (a trial's "validation loss before") repacks its weight for a CPU inference kernel and never
    # unpacks it, and that kernel has no backward: every later LoRA gradient upstream is None (measured
    # here: the adapter stayed at B = 0). A trial evaluates and trains the same base, so keep it off.
    for module in model.modules():
        if getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def quant_of(model: Any) -> str:
    """``4bit``, ``8bit`` or ``none``: how ``model`` (or the base under a PEFT model) was loaded."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base, "is_loaded_in_4bit", False):
        return "4bit"
    if getattr(base, "is_loaded_in_8bit", False):
        return "8bit"
    return "none"


def recorded_quant(metrics: dict[str, Any] | None) -> str:
    """The ``quant`` a trial's metrics.json records under ``load`` (``none`` when absent or unknown)."""
    load = (metrics or {}).get("load")
    value = load.get("quant") if isinstance(load, dict) else None
    return value if value in QUANTS else "none"


def load_flags(model: Any) -> dict[str, Any]:
    """What loading the base took beyond its dtype: ``{"quant": …, "quantization_config": {…}}``, the
    config as transformers writes it (``BitsAndBytesConfig.to_dict()``), for exports and for reloading."""
    quant = quant_of(model)
    out: dict[str, Any] = {"quant": quant}
    if quant != "none":
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        qc = getattr(base.config, "quantization_config", None)
        if qc is not None:
            d = qc.to_dict() if hasattr(qc, "to_dict") else dict(qc)
            out["quantization_config"] = {
                k: (str(v) if not isinstance(v, (int, float, bool, str, list, type(None))) else v) for k, v in d.items()
            }
    return out
