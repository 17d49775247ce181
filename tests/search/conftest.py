from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from .tiny import make_qa_file, make_tiny_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def qa_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_qa_file(tmp_path_factory.mktemp("data") / "qa.jsonl")


@pytest.fixture(scope="session")
def postgres():  # type: ignore[no-untyped-def]
    """A PostgreSQL server on a loopback port for the session, torn down after (never skipped)."""
    import shutil
    import tempfile

    from .postgres import PostgresServer

    # Not under pytest's tmp dir: its 0700 parents keep the postgres user out.
    root = Path(tempfile.mkdtemp(prefix="loratune-pg-"))
    root.chmod(0o755)
    server = PostgresServer(root / "pg")
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(RuntimeError):  # a test left it stopped
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
