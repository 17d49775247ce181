"""The seed's three scenarios (seed 000 §4.1), as presets that fix r, alpha, modules and dropout."""

from __future__ import annotations

from dataclasses import dataclass

from loratune.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    name: str
    r: int
    alpha: int
    strategy: str  # "attention" | "qv" | "all" (see advise/modules.py)
    dropout: float
    task: str | None  # task class it implies, when the user gives none
    goal: str | None  # goal it implies, when the user gives none
    scenario: str  # the seed's data / model / VRAM for it


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        # 시나리오 1: 간단한 QA — r 8, alpha 16, c_attn + c_proj (attention), dropout 0.05.
        Preset("simple-qa", 8, 16, "attention", 0.05, "simple-qa", None, "1,000 samples, GPT-2 small (124M), 8 GB"),
        # 시나리오 2: 복잡한 생성 — r 16, alpha 32, q/k/v/o, dropout 0.1.
        Preset("complex-generation", 16, 32, "attention", 0.1, "generation", None, "10,000+ samples, LLaMA-7B, 16 GB+"),
        # 시나리오 3: 메모리 제약 — r 4, alpha 8, q/v only, dropout 0.05.
        Preset("memory-constrained", 4, 8, "qv", 0.05, None, "memory", "any data size, a large model, 4–8 GB"),
    )
}


def get_preset(name: str) -> Preset:
    key = name.strip().lower().replace("_", "-")
    if key not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}", f"use one of {', '.join(PRESETS)} (seed 000 §4.1)")
    return PRESETS[key]
