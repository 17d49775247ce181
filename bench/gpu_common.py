"""What the CUDA benches share: the dry-run switch, catalog configs (shrunk in a dry run), the CUDA
context measurement and the machine record. Run by bench/gpu_check.sh; nothing here needs a GPU to import.

Dry run (``--dry-run`` or ``LORATUNE_GPU_DRY_RUN=1``): the device becomes the CPU, every catalog shape is
shrunk to 2 layers × 64 wide (vocab 512), batches and lengths to a few tokens, and results go to
``bench/work/`` (never ``bench/results/``): the code path of the GPU check, runnable anywhere.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
WORK = BENCH / "work"  # git-ignored: dry-run output


def dry_run_requested(flag: bool) -> bool:
    return flag or os.environ.get("LORATUNE_GPU_DRY_RUN", "") not in ("", "0")


def pick_device(requested: str, dry_run: bool) -> str:
    """The device the bench measures on: the CPU in a dry run, else ``requested`` resolved (``cuda`` must exist)."""
    if dry_run:
        return "cpu"
    from loratune.trial.device import resolve_device

    return resolve_device(requested)


def catalog_config(name: str, *, dry_run: bool) -> dict[str, Any]:
    """A catalog architecture's config (the real one, or shrunk to a tiny shape of the same family)."""
    from loratune.models import read_config, resolve_source

    cfg = dict(read_config(resolve_source(name)))
    if dry_run:
        heads = 4
        cfg.update(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=heads,
            num_key_value_heads=2,
            vocab_size=512,
            max_position_embeddings=max(int(cfg.get("max_position_embeddings", 2048)), 2048),
        )
        cfg.pop("head_dim", None)
    return cfg


def shrink(batch: int, seq: int, dry_run: bool) -> tuple[int, int]:
    return (min(batch, 2), min(seq, 32)) if dry_run else (batch, seq)


def out_path(name: str, dry_run: bool, out: Path | None = None) -> Path:
    if out is not None:
        return out
    return (WORK / name.replace(".json", "_dryrun.json")) if dry_run else RESULTS / name


def machine(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "device": device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
        import peft

        info["peft"] = peft.__version__
    except ImportError:
        pass
    try:
        import bitsandbytes

        info["bitsandbytes"] = bitsandbytes.__version__
    except ImportError:
        info["bitsandbytes"] = None
    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        info.update(
            gpu=props.name,
            gpu_memory_bytes=int(props.total_memory),
            capability=list(torch.cuda.get_device_capability(index)),
            bf16=bool(torch.cuda.is_bf16_supported()),
            cuda=torch.version.cuda,
        )
    return info


def nvidia_smi_used_bytes() -> int | None:
    """Memory in use on GPU 0 as the driver reports it (includes the CUDA context), if nvidia-smi exists."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
        return int(out.splitlines()[0]) * 2**20
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


def cuda_context(device: str) -> dict[str, Any]:
    """The CUDA context term, measured (``loratune.measure.preflight.cuda_context_bytes``) and, where
    nvidia-smi exists, as the driver counts it; beside budget.memory's assumed constant."""
    from loratune.budget.memory import CUDA_CONTEXT_BYTES

    if not device.startswith("cuda"):
        return {"measured": False, "why": "not on CUDA (dry run or CPU)", "assumed_bytes": CUDA_CONTEXT_BYTES}
    from loratune.measure.preflight import cuda_context_bytes

    ctx: dict[str, Any] = dict(cuda_context_bytes(device))
    ctx["nvidia_smi_used_bytes"] = nvidia_smi_used_bytes()
    ctx["assumed_bytes"] = CUDA_CONTEXT_BYTES
    ctx["measured"] = True
    return ctx


def write_json(path: Path, data: dict[str, Any], *, quiet: bool = False) -> None:
    from loratune.paths import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")
    if not quiet:
        print(f"wrote {path}", flush=True)


class Deadline:
    """Rows after ``seconds`` are skipped (recorded as skipped): the GPU check must end in its slot."""

    def __init__(self, seconds: float | None) -> None:
        self.end = None if seconds is None else time.monotonic() + seconds

    def passed(self) -> bool:
        return self.end is not None and time.monotonic() > self.end


def free_cuda() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
