"""Load a model *with* weights (for trials and measurement): the only place that reads weight files.

Safety: safetensors only unless ``allow_pickle`` (``--allow-pickle``); never ``trust_remote_code``.
The embedded GGUF is de-quantized by transformers to dense ``nn.Linear`` weights once and cached as
a plain safetensors directory: it then loads in a fraction of a second, and transformers' ``Trainer``
accepts it (a model loaded straight from GGUF counts as quantized and is refused).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from loratune.errors import ModelSourceError, UnsafeWeightsError
from loratune.models.catalog import EMBEDDED_ENCODER, EMBEDDED_MODEL
from loratune.models.source import PICKLE_SUFFIXES, ModelSource, embedded_encoder_dir, embedded_gguf
from loratune.paths import cache_dir

_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def weights_dir(source: ModelSource, *, allow_pickle: bool = False) -> Path:
    """A directory ``from_pretrained`` can read for ``source`` (building the GGUF cache if needed)."""
    if source.kind == "catalog":
        if source.name == EMBEDDED_ENCODER:
            encoder = embedded_encoder_dir()
            check_weight_files(encoder, allow_pickle=False)
            return encoder
        if source.name != EMBEDDED_MODEL:
            raise ModelSourceError(
                f"the catalog holds only the architecture of {source.name}, not its weights",
                f"pass a local directory or .gguf file with weights, or use {EMBEDDED_MODEL} / {EMBEDDED_ENCODER}",
            )
        return dense_copy_of_gguf(embedded_gguf(), EMBEDDED_MODEL)
    assert source.path is not None
    if source.kind == "gguf":
        return dense_copy_of_gguf(source.path, source.path.stem)
    from loratune.models.skeleton import read_config

    read_config(source)  # refuses custom code (auto_map) and impossible sizes before anything loads
    check_weight_files(source.path, allow_pickle=allow_pickle)
    return source.path


def check_weight_files(directory: Path, *, allow_pickle: bool) -> None:
    files = [p for p in directory.iterdir() if p.is_file()]
    safe = [p for p in files if p.suffix == ".safetensors"]
    pickled = [p for p in files if p.suffix in PICKLE_SUFFIXES and "training_args" not in p.name]
    if not safe and not pickled:
        raise ModelSourceError(f"{directory} holds no weights", "save the model with save_pretrained (safetensors)")
    if not safe and pickled and not allow_pickle:
        raise UnsafeWeightsError(
            f"{directory} holds only pickle weights ({pickled[0].name}); loading pickle can run arbitrary code",
            "convert them to safetensors, or pass --allow-pickle if you trust the file",
        )
    for p in safe:
        check_safetensors(p)


def check_safetensors(path: Path) -> None:
    """Refuse a truncated or corrupt ``.safetensors`` file by its header alone (no tensor is read).

    Format (huggingface/safetensors, docs "Format"): 8 bytes little-endian header length N, N bytes of
    JSON mapping each tensor to ``dtype``, ``shape`` and ``data_offsets`` [begin, end) into the data
    that follows; the data section must be as long as the largest end offset."""
    import json
    import struct

    size = path.stat().st_size
    bad = f"{path} is not a valid safetensors file"
    fix = "re-save the model with save_pretrained (or re-download the file)"
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ModelSourceError(f"{bad} (only {size} bytes)", fix)
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, 100 << 20):
                raise ModelSourceError(f"{bad} (header length {n} exceeds the file)", fix)
            header = json.loads(f.read(n))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ModelSourceError(f"{bad} (its header is not JSON)", fix) from None
    if not isinstance(header, dict):
        raise ModelSourceError(f"{bad} (its header is not a JSON object)", fix)
    ends = [v.get("data_offsets", [0, 0])[1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    if len(ends) != len([k for k in header if k != "__metadata__"]) or not all(isinstance(e, int) for e in ends):
        raise ModelSourceError(f"{bad} (malformed tensor entries)", fix)
    if 8 + n + max(ends, default=0) > size:
        raise ModelSourceError(f"{bad} (truncated: {size:,} bytes, header promises {8 + n + max(ends):,})", fix)


def dense_copy_of_gguf(gguf: Path, name: str) -> Path:
    """De-quantize a GGUF once into ``<cache>/models/<name>`` (safetensors + tokenizer)."""
    target = cache_dir("models") / name
    stamp = f"{gguf.stat().st_size}:{int(gguf.stat().st_mtime)}"
    marker = target / "loratune-source.txt"
    if marker.is_file() and marker.read_text() == stamp:
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
        )
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
    except Exception as e:
        raise ModelSourceError(
            f"cannot load the GGUF file {gguf}: {type(e).__name__}: {str(e)[:160]}", "check the file"
        ) from None
    # Trainer refuses a model that still carries the GGUF quantization config; the weights are dense.
    model.config.quantization_config = None
    if hasattr(model.config, "__dict__"):
        model.config.__dict__.pop("quantization_config", None)
    loaded: Any = model  # attributes transformers' stubs type as modules
    loaded.hf_quantizer = None
    loaded.is_quantized = False
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    (tmp / "loratune-source.txt").write_text(stamp)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def load_model(
    source: ModelSource, *, dtype: str = "fp32", device: str = "cpu", allow_pickle: bool = False, quant: str = "none"
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` with dense weights in ``dtype`` on ``device``, in eval mode; with ``quant``
    (8bit / 4bit) the linear layers quantized by bitsandbytes, ``dtype`` their compute dtype."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in _DTYPES:
        raise ModelSourceError(f"unknown dtype {dtype!r}", f"use one of {', '.join(_DTYPES)}")
    path = weights_dir(source, allow_pickle=allow_pickle)
    torch_dtype = getattr(torch, _DTYPES[dtype])
    try:
        if quant != "none":
            from loratune.models.quantized import load_quantized

            quantized = load_quantized(
                str(path), quant, compute_dtype=dtype, device=device, use_safetensors=not allow_pickle or None
            )
            tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
            return quantized.eval(), tok
        model: Any = AutoModelForCausalLM.from_pretrained(
            str(path),  # type: ignore[arg-type]  # the stubs name a model class; a path is what it takes
            dtype=torch_dtype,
            local_files_only=True,
            use_safetensors=not allow_pickle or None,
        )
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as e:
        raise ModelSourceError(f"cannot load {path}: {str(e)[:200]}", "check the model directory") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model.to(device).eval(), tok
