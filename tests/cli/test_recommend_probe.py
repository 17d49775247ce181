"""``loratune recommend MODEL --data FILE --probe``: a measured LR in place of the rule's, the curve printed."""

from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--probe"], "--probe trains on your data: it needs --data"),
        (["--probe-plot", "c.png"], "--probe-plot draws the curve of --probe"),
        (["--data", "demo", "--probe", "--probe-steps", "5"], "--probe-steps must be a whole number from 10 to 200"),
    ],
)
def test_a_probe_that_cannot_run_is_one_line_before_torch(refused_cheaply, tmp_path, args, needle):
    refused_cheaply(["recommend", "smollm2-135m", *args], needle, tmp_path)


def test_the_probe_prints_the_curve_and_uses_its_lr(cli, tiny_model_dir, qa_file, tmp_path):
    png = tmp_path / "curve.png"
    args = ("recommend", str(tiny_model_dir), "--data", str(qa_file), "--probe", "--probe-steps", "20")
    r = cli(*args, "--probe-plot", str(png))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "LR range test" in out and "┤" in out and "└" in out  # the terminal plot
    chosen = next(line for line in out.splitlines() if line.startswith("chosen LR "))
    value = chosen.split()[2]
    assert "(the rule says " in chosen and "minimum ÷ 10" in " ".join(out.split())
    row = next(line for line in out.splitlines() if line.startswith("learning_rate "))
    assert row.split()[1] == value and "LR range test" in row  # the config carries the measured LR
    assert png.read_bytes()[:4] == b"\x89PNG" and str(png) in r.stderr
    assert "LR range test" in r.stderr  # progress on stderr

    d = json.loads(cli(*args, "--json").stdout)
    probe = d["lr_probe"]
    assert d["training"]["learning_rate"] == probe["lr"] == float(value)
    assert len(probe["lrs"]) == len(probe["losses"]) == len(probe["smoothed"]) <= 20 and probe["reason"]
    lr = next(e for e in d["explanations"] if e["param"] == "learning_rate")
    assert lr["alternative"]["source"].startswith("LoRA Without Regret")  # the rule's value, kept beside it


def test_a_classifier_recommendation_is_not_probed(cli):
    # the probe trains a causal LM; an encoder classifier's head needs the classification loop
    r = cli("recommend", "all-minilm-l6-v2", "--task", "classification", "--data", "demo-cls", "--probe")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "SEQ_CLS" in r.stderr
