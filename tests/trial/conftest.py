"""The trial tests' own setting; the tiny models and data they use are root fixtures (tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny models gain nothing from threads, and on a shared machine a second thread can stall."""
    monkeypatch.setenv("LORATUNE_THREADS", "1")
