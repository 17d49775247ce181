from __future__ import annotations

from pathlib import Path

import pytest

from .tiny import make_qa_file, make_tiny_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def qa_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_qa_file(tmp_path_factory.mktemp("data") / "qa.jsonl")
