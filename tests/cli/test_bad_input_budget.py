"""Bad input to ``loratune budget``, through the real entry point (``cli.app.run``): one line naming the
problem and the fix, exit code 2, no traceback — one test per class of bad input (issue #11)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loratune.cli.app import run


def loratune(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = run(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run, assert exit 2, one ``error:`` line, no traceback; return the line."""
    rc, out = loratune(capsys, *argv)
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert rc == 2, out
    assert "Traceback" not in out
    assert len(lines) == 1 and lines[0].startswith("error: ") and " — " in lines[0], out
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--r", "abc"], "'--r'"),
        (["--alpha", "many"], "'--alpha'"),
        (["--batch-size", "1.5"], "'--batch-size'"),
        (["--bogus"], "No such option"),
    ],
)
def test_usage_and_type_errors_are_typer_usage_exit_2(capsys, argv: list[str], says: str) -> None:
    rc, out = loratune(capsys, "budget", "gpt2", *argv)
    assert rc == 2 and says in out and "Traceback" not in out
    assert len([ln for ln in out.splitlines() if ln.strip()]) <= 6


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--alpha", "nan"], "lora_alpha must be a finite number > 0, got nan"),
        (["--alpha", "inf"], "lora_alpha must be a finite number > 0, got inf"),
        (["--dropout", "nan"], "lora_dropout must be a number in [0, 1), got nan"),
        (["--vram", "1e400GB"], "--vram '1e400GB' is more than 1 PiB"),
        (["--vram", "nanGB"], "cannot read --vram 'nanGB'"),
        (["--alpha-pattern", "c_attn=nan"], "alpha_pattern 'c_attn' must be a finite number > 0"),
        (["--alpha-pattern", "c_attn=1e400"], "alpha_pattern 'c_attn' must be a finite number > 0, got inf"),
        (["--rank-pattern", "c_attn=1e400"], "--rank-pattern 'c_attn' must be a whole number"),
        (["--seq-len", "99999999999999999999999"], "sequence length (--seq-len)"),
        (["--batch-size", "99999999999999999999999"], "batch size (--batch-size)"),
        (["--layers", "0-99999999999999999999"], "past the model's last layer"),
    ],
)
def test_nan_inf_and_overflow_are_refused(capsys, argv: list[str], says: str) -> None:
    assert says in refused(capsys, "budget", "gpt2", *argv)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--r", "0"], "r must be a positive integer, got 0"),
        (["--r", "-8"], "r must be a positive integer, got -8"),
        (["--alpha", "0"], "lora_alpha must be a finite number > 0"),
        (["--alpha", "-16"], "lora_alpha must be a finite number > 0, got -16"),
        (["--dropout", "-0.1"], "lora_dropout must be a number in [0, 1)"),
        (["--dropout", "1.5"], "lora_dropout must be a number in [0, 1)"),
        (["--vram", "0GB"], "--vram must be positive"),
        (["--vram", "-8GB"], "cannot read --vram '-8GB'"),
        (["--batch-size", "0"], "batch size (--batch-size) must be at least 1"),
        (["--seq-len", "-512"], "sequence length (--seq-len) must be at least 1"),
        (["--target-r", "0", "--method", "adalora"], "target_r must be a positive integer, got 0"),
        (["--target-r", "4"], "target_r = 4 applies to AdaLoRA only"),
    ],
)
def test_zero_and_negative_are_refused(capsys, argv: list[str], says: str) -> None:
    assert says in refused(capsys, "budget", "gpt2", *argv)


@pytest.mark.parametrize("r", ["769", "5000", "99999999999999999999999"])
def test_rank_beyond_the_modules_dimensions_names_the_largest_sensible_r(capsys, r: str) -> None:
    line = refused(capsys, "budget", "gpt2", "--r", r)
    assert f"r = {int(r):,} is above min(in, out) of every module it adapts" in line
    assert "largest sensible r is 768" in line and "--r 768 or less" in line


def test_rank_at_the_dimension_is_counted(capsys) -> None:
    rc, out = loratune(capsys, "budget", "gpt2", "--r", "768", "--json")
    assert rc == 0 and json.loads(out)["trainable_params"] > 0


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--alpha-pattern", "c_attn=-4"], "alpha_pattern 'c_attn' must be a finite number > 0, got -4.0"),
        (["--alpha-pattern", "c_attn=0"], "alpha_pattern 'c_attn' must be a finite number > 0"),
        (["--rank-pattern", "c_attn=-4"], "rank_pattern 'c_attn' must be a positive integer, got -4"),
        (["--rank-pattern", "c_attn=2.5"], "--rank-pattern 'c_attn' must be a whole number, got 2.5"),
        (["--rank-pattern", "c_attn=5000"], "rank_pattern rank = 5,000 is above min(in, out)"),
        (["--rank-pattern", "(=4"], "is not a valid regex"),
        (["--rank-pattern", '{"c_attn": [1]}'], "cannot read --rank-pattern"),
    ],
)
def test_bad_pattern_values_are_refused(capsys, argv: list[str], says: str) -> None:
    assert says in refused(capsys, "budget", "gpt2", *argv)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--exclude", "nosuch"], "exclude 'nosuch' matches no module of gpt2"),
        (["--exclude", "c_atn"], "did you mean c_attn"),
        (["--exclude", "c_fc"], "matches none of the targeted modules"),
        (["--targets", "c_atn"], "did you mean c_attn"),
        (["--modules-to-save", "nosuch"], "modules_to_save entry 'nosuch' matches no module"),
    ],
)
def test_exclude_and_targets_matching_nothing_are_refused(capsys, argv: list[str], says: str) -> None:
    assert says in refused(capsys, "budget", "gpt2", *argv)


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("notjson.json", "{", "is not valid JSON (line 1, column 2"),
        ("nonutf8.json", b"\xff\xfe{}", "is not UTF-8 text"),
        ("deep.json", "[" * 100_000 + "]" * 100_000, "is nested too deeply"),
        ("list.json", "[1, 2]", "holds a JSON list, not an object"),
        (
            "wrongtype.json",
            json.dumps({"config": {"r": "eight"}}),
            "in 'config': r must be a whole number, got 'eight'",
        ),
        ("unknownkey.json", json.dumps({"config": {"r": 8, "bogus": 1}}), "unknown key 'bogus'"),
        ("unknowntop.json", json.dumps({"confg": {"r": 8}}), "did you mean 'config'?"),
        ("nan.json", '{"config": {"r": 8, "lora_alpha": NaN}}', "lora_alpha must be a finite number > 0, got nan"),
        ("negr.json", json.dumps({"config": {"r": -4}}), "r must be a positive integer, got -4"),
        ("bigr.json", json.dumps({"r": 5000, "target_modules": ["c_attn"]}), "largest sensible r is 768"),
        ("exclude.json", json.dumps({"r": 8, "target_modules": ["c_attn"], "exclude_modules": ["x"]}), "exclude 'x'"),
    ],
)
def test_malformed_config_file_names_file_and_place(
    capsys, tmp_path: Path, name: str, content: str | bytes, says: str
) -> None:
    f = tmp_path / name
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    line = refused(capsys, "budget", "gpt2", "--config", str(f))
    assert says in line
    if name not in ("bigr.json", "exclude.json"):  # those are the model's verdict on valid values
        assert str(f) in line


def test_config_directory_and_missing_file(capsys, tmp_path: Path) -> None:
    assert "is a directory" in refused(capsys, "budget", "gpt2", "--config", str(tmp_path))
    assert "does not exist" in refused(capsys, "budget", "gpt2", "--config", str(tmp_path / "nope.json"))


def test_config_of_recommend_counts_what_recommend_counted(capsys, tmp_path: Path) -> None:
    rc, out = loratune(capsys, "recommend", "gpt2", "--dataset-size", "3000", "--json")
    assert rc == 0
    rec = json.loads(out)
    f = tmp_path / "rec.json"
    f.write_text(out)
    rc, out = loratune(capsys, "budget", "gpt2", "--config", str(f), "--json")
    assert rc == 0 and json.loads(out)["trainable_params"] == rec["trainable_params"]
    # Flags go on top of the file.
    rc, out = loratune(capsys, "budget", "gpt2", "--config", str(f), "--r", "4", "--json")
    assert rc == 0 and json.loads(out)["peft_config"]["r"] == 4


def test_adalora_config_counted_as_lora_drops_target_r(capsys, tmp_path: Path) -> None:
    f = tmp_path / "ada.json"
    f.write_text(json.dumps({"init_r": 12, "target_r": 8, "lora_alpha": 16, "target_modules": ["c_attn"]}))
    rc, out = loratune(capsys, "budget", "gpt2", "--config", str(f), "--method", "lora", "--json")
    assert rc == 0 and json.loads(out)["peft_config"]["r"] == 12
    rc, out = loratune(capsys, "budget", "gpt2", "--config", str(f), "--json")
    assert rc == 0 and json.loads(out)["peft_config"]["target_r"] == 8
