"""Anatomy: every module LoRA can wrap, its role and shape, and what a target spec matches."""

from loratune.anatomy.types import (
    ATTENTION_ROLES,
    MLP_ROLES,
    ROLES,
    WARNING_KINDS,
    AdaptableModule,
    Anatomy,
    ArchFacts,
    TargetWarning,
    WarningKind,
)

__all__ = [
    "ATTENTION_ROLES",
    "MLP_ROLES",
    "ROLES",
    "WARNING_KINDS",
    "AdaptableModule",
    "Anatomy",
    "ArchFacts",
    "TargetWarning",
    "WarningKind",
]
