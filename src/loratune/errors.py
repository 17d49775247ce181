"""One exception root for everything a user can cause.

The CLI maps every :class:`LoratuneError` to one line (problem + fix) and exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class LoratuneError(Exception):
    """Root of all user-facing errors. ``hint`` says how to fix it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class ModelSourceError(LoratuneError):
    """The MODEL argument cannot be resolved or read (unknown name, missing path, corrupt file)."""


class UnsafeWeightsError(ModelSourceError):
    """Pickle-based weights were found and the user did not pass --allow-pickle."""


class TargetError(LoratuneError):
    """A target-module spec matches nothing or something LoRA cannot wrap."""


class ConfigError(LoratuneError):
    """An invalid hyperparameter value (r <= 0, bad layer range, bad size...)."""


class DataError(LoratuneError):
    """A dataset file is missing, malformed or of an unknown format."""


class TrialError(LoratuneError):
    """A training trial could not run or diverged."""


__all__ = [
    "ConfigError",
    "DataError",
    "LoratuneError",
    "ModelSourceError",
    "TargetError",
    "TrialError",
    "UnsafeWeightsError",
]
