"""Bad input to ``loratune recommend`` through the real entry point, and the shared output-path checks
(``loratune.outputs``, re-exported by ``cli.common``): exit 2, one line, checked before any work, and
nothing left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loratune.cli import recommend_cmd
from loratune.cli.app import run
from loratune.cli.common import check_output_dir, check_output_file
from loratune.errors import ConfigError


def loratune(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = run(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    rc, out = loratune(capsys, *argv)
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert rc == 2, out
    assert "Traceback" not in out and len(lines) <= 6, out
    return out


def files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the command reaches the model: the check must come before any work."""

    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("the model was loaded before the output path was checked")

    monkeypatch.setattr(recommend_cmd, "load_anatomy", boom)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--dataset-size", "lots"], "'--dataset-size'"),
        (["--seq-len", "1.5"], "'--seq-len'"),
        (["--goal", "nonsense"], "--goal"),
    ],
)
def test_usage_and_type_errors(capsys, argv: list[str], says: str) -> None:
    assert says in refused(capsys, "recommend", "gpt2", *argv)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--vram", "1e400GB"], "--vram '1e400GB' is more than 1 PiB"),
        (["--vram", "nanGB"], "cannot read --vram"),
        (["--vram", "0GB"], "--vram must be positive"),
        (["--dataset-size", "0"], "dataset size (--dataset-size) must be at least 1"),
        (["--dataset-size", "-5"], "dataset size (--dataset-size) must be at least 1"),
        (["--dataset-size", "99999999999999999999999"], "absurdly large"),
        (["--seq-len", "0"], "sequence length (--seq-len) must be at least 1"),
        (["--seq-len", "99999999999999999999999"], "absurdly large"),
    ],
)
def test_bad_numbers(capsys, argv: list[str], says: str) -> None:
    out = refused(capsys, "recommend", "gpt2", *argv)
    assert says in out and out.startswith("error: ")


def test_recommended_rank_is_capped_by_the_anatomy(capsys) -> None:
    rc, out = loratune(capsys, "recommend", "gpt2", "--dataset-size", "10000000", "--json")
    d = json.loads(out)
    assert rc == 0 and d["config"]["r"] == 256
    r = next(e for e in d["explanations"] if e["param"] == "r")
    assert "capped at 256" in r["rule"]


def test_export_list_writes_one_file_per_format(capsys, tmp_path: Path) -> None:
    out_dir = tmp_path / "exports"
    rc, out = loratune(
        capsys, "recommend", "gpt2", "--dataset-size", "100", "--export", "peft,axolotl", "--out", str(out_dir)
    )
    assert rc == 0, out
    assert files(out_dir) == ["axolotl.yaml", "peft.json"]
    assert f"wrote {out_dir / 'peft.json'}, {out_dir / 'axolotl.yaml'}" in out
    # Each file is what the single-format export prints.
    for fmt, name in (("peft", "peft.json"), ("axolotl", "axolotl.yaml")):
        rc, one = loratune(capsys, "recommend", "gpt2", "--dataset-size", "100", "--export", fmt)
        assert rc == 0 and one.startswith((out_dir / name).read_text())


def test_export_list_checks_every_name_before_writing(capsys, tmp_path: Path, no_work) -> None:
    out = refused(capsys, "recommend", "gpt2", "--export", "peft,axlotl", "--out", str(tmp_path / "x"))
    assert "'axlotl' is not one of" in out and "did you mean axolotl?" in out
    assert files(tmp_path) == []


def test_export_list_needs_an_out_folder(capsys, no_work) -> None:
    assert "add --out DIR" in refused(capsys, "recommend", "gpt2", "--export", "peft,axolotl")


def test_export_a_format_refuses_writes_nothing(capsys, tmp_path: Path) -> None:
    # torchtune has no builder for gpt2: the refusal comes after the recommendation, before any write.
    out = refused(capsys, "recommend", "gpt2", "--export", "peft,torchtune", "--out", str(tmp_path / "d"))
    assert "torchtune" in out and files(tmp_path) == []


@pytest.mark.parametrize(
    ("export", "target", "says"),
    [
        ("peft", "adir", "is a directory, not a file"),
        ("peft", "afile/x.json", "afile, which is a file"),
        ("peft,axolotl", "afile", "is an existing file, not a folder"),
        ("peft,axolotl", "afile/sub", "afile, which is a file"),
        (None, "adir", "is a directory, not a file"),
    ],
)
def test_out_checked_before_any_work_and_nothing_left(
    capsys, tmp_path: Path, no_work, export: str | None, target: str, says: str
) -> None:
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("a regular file\n")
    before = files(tmp_path)
    argv = ["recommend", "gpt2", "--out", str(tmp_path / target)] + (["--export", export] if export else [])
    out = refused(capsys, *argv)
    assert says in out and "--out" in out
    assert files(tmp_path) == before and (tmp_path / "afile").read_text() == "a regular file\n"


def test_out_not_writable(capsys, no_work) -> None:
    assert "is not writable (/proc" in refused(capsys, "recommend", "gpt2", "--out", "/proc/loratune.json")


def test_out_json_is_written_whole(capsys, tmp_path: Path) -> None:
    f = tmp_path / "new" / "rec.json"
    rc, _ = loratune(capsys, "recommend", "gpt2", "--dataset-size", "100", "--out", str(f))
    assert rc == 0 and json.loads(f.read_text())["config"]["r"] == 8
    assert files(tmp_path) == ["new", "new/rec.json"]  # no temp file left beside it


def test_output_helpers(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    assert check_output_file(tmp_path / "a" / "b.json") == tmp_path / "a" / "b.json"
    assert check_output_dir(tmp_path / "new" / "dir") == tmp_path / "new" / "dir"
    assert check_output_dir(tmp_path) == tmp_path
    with pytest.raises(ConfigError, match="--save .* is a directory"):
        check_output_file(tmp_path, "--save")
    with pytest.raises(ConfigError, match="is an existing file, not a folder"):
        check_output_dir(tmp_path / "afile")
    with pytest.raises(ConfigError, match="afile, which is a file"):
        check_output_dir(tmp_path / "afile" / "sub")
    assert files(tmp_path) == ["afile"]  # the checks create nothing
