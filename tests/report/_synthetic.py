"""tests/search/synthetic.py, loaded by path for the report's tests (pytest runs with --import-mode=importlib,
so the search tests' package is not importable from here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType


def load_synthetic() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "search" / "synthetic.py"
    spec = importlib.util.spec_from_file_location("loratune_tests_synthetic", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
