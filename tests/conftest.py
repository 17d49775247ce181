"""What many tests share, as fixtures (no test module imports another):

- ``tiny_config(kind, **change)``: the one tiny shape — 2 layers, 64 wide, 4 heads (2 key/value heads),
  MLP width 128 — as a transformers config for ``llama``, ``gpt2`` or ``bert``;
- ``tiny_llama(vocab, seed)`` / ``tiny_gpt2(vocab, seed)``: causal LMs of that shape in eval mode, with
  weights that let a few LoRA steps visibly learn; ``qa_examples(n, seed)``: token data they can learn;
  ``tiny_tokenizer``: just what the trial code reads from a tokenizer; ``llama_runner``: a trial runner
  over a tiny Llama;
- ``tiny_model_dir`` / ``qa_file``: a tiny Llama saved with SmolLM2's tokenizer and a QA file, for the CLI;
- ``cli(*args)``: ``loratune ARGS`` in this process through the real entry point, exit code included;
  ``refused_cheaply(args, needle, cwd)``: a command line that must be refused in one line, in a fresh
  interpreter, before torch is imported and without writing anything.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")
VOCAB = 128
TINY = {"hidden": 64, "intermediate": 128, "layers": 2, "heads": 4, "kv_heads": 2}


def _tiny_config(kind: str, **change: Any) -> Any:
    import transformers

    if kind == "llama":
        base = dict(
            hidden_size=TINY["hidden"],
            intermediate_size=TINY["intermediate"],
            num_hidden_layers=TINY["layers"],
            num_attention_heads=TINY["heads"],
            num_key_value_heads=TINY["kv_heads"],
            vocab_size=VOCAB,
        )
        return transformers.LlamaConfig(**{**base, **change})
    if kind == "gpt2":
        base = dict(n_embd=TINY["hidden"], n_layer=TINY["layers"], n_head=TINY["heads"], vocab_size=VOCAB)
        return transformers.GPT2Config(**{**base, **change})
    if kind == "bert":
        base = dict(
            hidden_size=TINY["hidden"],
            num_hidden_layers=TINY["layers"],
            num_attention_heads=TINY["heads"],
            intermediate_size=TINY["intermediate"],
            vocab_size=VOCAB,
        )
        return transformers.BertConfig(**{**base, **change})
    raise ValueError(f"no tiny config for {kind!r}")


@pytest.fixture(scope="session")
def tiny_config() -> Callable[..., Any]:
    return _tiny_config


# 0.02 (the default) caps the logits of a 64-wide head near ±1.3, so no token can get more than ~3 %
# probability and the loss floors at ~3.6 whatever LoRA learns; 0.2 lets learning show.
LEARNABLE = {"initializer_range": 0.2, "max_position_embeddings": 256}


def _tiny_llama(vocab: int = VOCAB, seed: int = 0) -> Any:
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(_tiny_config("llama", vocab_size=vocab, **LEARNABLE)).eval()


def _tiny_gpt2(vocab: int = VOCAB, seed: int = 0) -> Any:
    import torch
    from transformers import GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(_tiny_config("gpt2", vocab_size=vocab, n_positions=256, initializer_range=0.2)).eval()


@pytest.fixture
def tiny_llama() -> Callable[..., Any]:
    return _tiny_llama


@pytest.fixture
def tiny_gpt2() -> Callable[..., Any]:
    return _tiny_gpt2


def _qa_examples(n: int, seed: int = 0, answer: tuple[int, ...] = (7, 8, 9, 10, 11, 1)) -> list[Any]:
    """Random prompts of varied length, all answered with the same short sequence: easy to learn."""
    from loratune.data import IGNORE_INDEX, TokenizedExample

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt = [rng.randint(20, VOCAB - 1) for _ in range(rng.randint(6, 30))]
        out.append(TokenizedExample(prompt + list(answer), [IGNORE_INDEX] * len(prompt) + list(answer)))
    return out


@pytest.fixture
def qa_examples() -> Callable[..., list[Any]]:
    return _qa_examples


class TinyTokenizer:
    """Just what the trial code reads from a tokenizer: pad/eos ids and decode."""

    pad_token_id = 0
    eos_token_id = 1
    pad_token = "<pad>"
    eos_token = "</s>"

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return " ".join(f"t{i}" for i in ids if not (skip_special_tokens and i in (0, 1)))


@pytest.fixture
def tiny_tokenizer() -> TinyTokenizer:
    return TinyTokenizer()


@pytest.fixture
def llama_runner() -> Any:
    from loratune.trial import TrialRunner

    return TrialRunner((_tiny_llama(), TinyTokenizer()), compute_dtype="fp32")


# ---- on disk, for the CLI -----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random Llama (2 layers, 32 wide) saved with safetensors and SmolLM2's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from loratune.models import resolve_source
    from loratune.models.weights import weights_dir

    tok = AutoTokenizer.from_pretrained(str(weights_dir(resolve_source("smollm2-135m"))), local_files_only=True)
    torch.manual_seed(0)
    cfg = _tiny_config("llama", hidden_size=32, intermediate_size=64, vocab_size=len(tok), tie_word_embeddings=True)
    d = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).save_pretrained(d, safe_serialization=True)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def qa_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = [{"prompt": f"What is {i} plus {i}?", "response": f"It is {2 * i}."} for i in range(40)]
    p = tmp_path_factory.mktemp("data") / "qa.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


# ---- the CLI --------------------------------------------------------------------------------------------
class CliResult(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """``loratune ARGS`` in this process through ``cli.app.run`` (what ``main`` exits with)."""
    from loratune.cli.app import run

    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("LORATUNE_THREADS", "1")

    def _run(*args: str) -> CliResult:
        capsys.readouterr()
        rc = run(list(args))
        out = capsys.readouterr()
        return CliResult(rc, out.out, out.err)

    return _run


# Runs one command line in a fresh interpreter and reports which heavy modules it had imported.
_PROBE = """
import sys
from loratune.cli.app import main
sys.argv = ["loratune", *sys.argv[1:]]
try:
    main()
except SystemExit as e:
    heavy = [m for m in ("torch", "transformers", "peft") if m in sys.modules]
    sys.stderr.write(f"HEAVY={heavy}\\n")
    raise
"""


def _probe(args: list[str], cwd: Path) -> tuple[int, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        env={**os.environ, "PYTHONPATH": SRC, "COLUMNS": "200", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    return proc.returncode, (proc.stdout + proc.stderr).strip().splitlines()


def _refused_cheaply(args: list[str], needle: str, cwd: Path) -> None:
    before = sorted(p.relative_to(cwd) for p in cwd.rglob("*"))
    rc, lines = _probe(args, cwd)
    assert rc == 2, lines
    assert lines[-1] == "HEAVY=[]", lines  # refused before torch/transformers/peft were imported
    assert len(lines) == 2 and lines[0].startswith("error: ") and needle in lines[0], lines
    assert sorted(p.relative_to(cwd) for p in cwd.rglob("*")) == before  # nothing written


@pytest.fixture
def refused_cheaply() -> Callable[[list[str], str, Path], None]:
    return _refused_cheaply


@pytest.fixture
def tiny_vocab() -> int:
    """The vocabulary of ``tiny_llama``/``tiny_gpt2``/``qa_examples``."""
    return VOCAB
