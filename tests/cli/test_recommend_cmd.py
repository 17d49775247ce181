import json

import pytest
import yaml
from typer.testing import CliRunner

from loratune.cli.app import app as main_app
from loratune.errors import ConfigError


@pytest.fixture(scope="module")
def app():
    return main_app


runner = CliRunner()


def test_seed_example_as_json(app):
    r = runner.invoke(
        app,
        [
            "recommend",
            "gpt2",
            "--task",
            "simple-qa",
            "--dataset-size",
            "1000",
            "--vram",
            "8GB",
            "--rules",
            "seed",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["config"]["target_modules"] == ["c_attn", "c_proj"] and d["trainable_params"] == 811_008
    assert d["training"]["learning_rate"] == 2e-4
    assert {e["param"] for e in d["explanations"]} >= {
        "r",
        "lora_alpha",
        "target_modules",
        "lora_dropout",
        "learning_rate",
    }


def test_table_shows_rules_sources_and_the_other_side(app):
    r = runner.invoke(
        app, ["recommend", "gpt2", "--task", "simple-qa", "--dataset-size", "1000"], env={"COLUMNS": "220"}
    )
    assert r.exit_code == 0, r.output
    assert "1,179,648" in r.stdout  # all linear layers at r=8
    assert "seed 000 §3.2–3.3" in r.stdout and "2305.14314" in r.stdout


def test_export_to_file_is_written(app, tmp_path):
    out = tmp_path / "axolotl.yaml"
    r = runner.invoke(app, ["recommend", "llama-2-7b", "--vram", "8GB", "--export", "axolotl", "--out", str(out)])
    assert r.exit_code == 0, r.output
    cfg = yaml.safe_load(out.read_text())
    assert cfg["adapter"] == "qlora" and cfg["lora_r"] >= 4
    assert not list(tmp_path.glob(".axolotl.yaml.*"))  # no temp file left behind


def test_export_to_stdout(app):
    r = runner.invoke(app, ["recommend", "gpt2", "--preset", "simple-qa", "--rules", "seed", "--export", "peft"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["target_modules"] == ["c_attn", "c_proj"]


def test_data_file_is_counted(app, tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps({"prompt": "q" * 20, "response": "a" * 20}) + "\n" for _ in range(40)))
    r = runner.invoke(app, ["recommend", "gpt2", "--data", str(p), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["training"]["max_steps"] == 10 * 5  # 40 examples, batch 4 (40/10), 5 epochs
    rank = next(e for e in d["explanations"] if e["param"] == "r")
    assert rank["inputs"]["dataset_tokens"] == 400


def test_bad_choices_exit_2(app):
    r = runner.invoke(app, ["recommend", "gpt2", "--rules", "vibes"])
    assert r.exit_code == 2 and "vibes" in r.output
    r = runner.invoke(app, ["recommend", "gpt2", "--export", "deepspeed"])
    assert r.exit_code == 2


def test_user_errors_are_loratune_errors(app):
    r = runner.invoke(app, ["recommend", "gpt2", "--task", "aquarium inventory"])
    assert isinstance(r.exception, ConfigError)
    r = runner.invoke(app, ["recommend", "gpt2", "--dataset-size", "10", "--data", "demo"])
    assert isinstance(r.exception, ConfigError) and "not both" in r.exception.message
