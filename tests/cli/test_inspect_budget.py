"""The documented `inspect` and `budget` examples, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

LORATUNE = [sys.executable, "-m", "loratune.cli.app"]
# This checkout's sources, not whatever copy the interpreter has installed.
SRC = str(Path(__file__).resolve().parents[2] / "src")


def run(*args: str, columns: int = 200) -> subprocess.CompletedProcess[str]:
    env = {"COLUMNS": str(columns), "PATH": "", "PYTHONPATH": SRC}
    return subprocess.run([*LORATUNE, *args], capture_output=True, text=True, env=env)


def test_budget_seed_example_prints_811008_and_the_c_proj_warning() -> None:
    p = run("budget", "gpt2", "--r", "8", "--alpha", "16", "--targets", "c_attn,c_proj")
    assert p.returncode == 0, p.stderr
    assert "811,008" in p.stdout and "0.65 %" in p.stdout
    assert "c_proj" in p.stderr and "different roles" in p.stderr


def test_budget_json_keys() -> None:
    p = run("budget", "gpt2", "--targets", "c_attn,c_proj", "--layers", "6-11", "--method", "dora", "--json")
    data = json.loads(p.stdout)
    assert {"trainable_params", "total_params", "trainable_percent", "modules", "warnings"} <= set(data)
    assert data["total_params"] == 124_439_808
    # half the layers, DoRA adds out_features per module: 6·(8·3072+2304) + 6·(8·1536+768) + 6·(8·3840+768)
    assert data["trainable_params"] == 6 * (8 * 3072 + 2304) + 6 * (8 * 1536 + 768) + 6 * (8 * 3840 + 768)
    assert {m["layer"] for m in data["modules"]} == set(range(6, 12))
    assert sum(m["params"] for m in data["modules"]) == data["trainable_params"]


def test_inspect_json_schema_and_seven_roles() -> None:
    p = run("inspect", "smollm2-135m", "--json")
    data = json.loads(p.stdout)
    assert {"architecture", "num_layers", "total_params", "modules", "warnings"} <= set(data)
    assert data["num_layers"] == 30 and data["architecture"] == "LlamaForCausalLM"
    mod = data["modules"][0]
    assert set(mod) == {"name", "layer", "role", "in_features", "out_features", "kind"}
    layered = [m for m in data["modules"] if m["layer"] is not None]
    assert len(layered) == 30 * 7


def test_inspect_table() -> None:
    p = run("inspect", "gpt2")
    assert p.returncode == 0
    assert "c_attn" in p.stdout and "attn_qkv" in p.stdout and "768 → 2304" in p.stdout
    assert "'c_proj'" in p.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["budget", "gpt2", "--r", "0"], "r must be a positive integer"),
        (["budget", "gpt2", "--targets", "c_atn"], "did you mean c_attn"),
        (["budget", "gpt2", "--layers", "9-3"], "bad layer range"),
        (["budget", "gpt2", "--layers", "10-20"], "past the model's last layer"),
        (["inspect", "/no/such/model"], "no such file or directory"),
        (["inspect", "gpt-7"], "unknown model"),
    ],
)
def test_user_errors_are_one_line_exit_2(args: list[str], needle: str) -> None:
    p = run(*args)
    assert p.returncode == 2
    assert needle in p.stderr
    assert "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_corrupt_config_dir_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{")
    p = run("inspect", str(tmp_path))
    assert p.returncode == 2 and "not valid JSON" in p.stderr and "Traceback" not in p.stderr


def test_models_lists_catalog() -> None:
    p = run("models", "--json")
    names = {r["name"] for r in json.loads(p.stdout)}
    assert {"gpt2", "llama-2-70b", "smollm2-135m"} <= names


def test_budget_alpha_defaults_to_twice_r() -> None:
    """The seed's rule 1 (000 §2.2): alpha = 2·r unless given."""
    data = json.loads(run("budget", "smollm2-135m", "--r", "32", "--json").stdout)
    assert data["peft_config"]["lora_alpha"] == 64
    data = json.loads(run("budget", "smollm2-135m", "--r", "32", "--alpha", "32", "--json").stdout)
    assert data["peft_config"]["lora_alpha"] == 32


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize(
    "args",
    [
        ("inspect", "gpt2"),
        ("inspect", "smollm2-135m", "--full"),
        ("models",),
        ("budget", "gpt2", "--targets", "c_attn,c_proj"),
        ("budget", "smollm2-135m", "--targets", "all", "--per-module"),
        ("budget", "smollm2-135m", "--targets", "all-linear", "--r", "16", "--batch-size", "8", "--vram", "4GB"),
    ],
)
def test_output_reads_in_a_pipe(args: tuple[str, ...], columns: int) -> None:
    from rich.cells import cell_len

    p = run(*args, columns=columns)
    assert p.returncode == 0, p.stderr
    assert "\x1b[" not in p.stdout + p.stderr  # no colour codes when not a TTY
    assert max(cell_len(line) for line in p.stdout.splitlines()) <= columns
    assert "…" not in p.stdout  # names are folded, never cut


def test_json_warnings_stay_strings_with_kinds() -> None:
    data = json.loads(run("budget", "gpt2", "--targets", "c_attn,c_proj", "--json").stdout)
    assert data["warning_kinds"] == ["mixed_roles", "fused_qkv"]
    assert all(isinstance(w, str) for w in data["warnings"])
    data = json.loads(run("inspect", "gpt2", "--json").stdout)
    assert data["warning_kinds"] == ["ambiguous_suffix", "fused_qkv", "tied_head"]
