"""Bad input to ``loratune search`` and ``loratune report`` through the real entry point (``cli.app.run``):
one line ``error: problem — fix``, exit 2, before the model loads, nothing left behind; Ctrl-C is 130 with
the note that says how to resume (issue #11). Nothing here trains."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from loratune.cli.app import run
from loratune.search import LRPlan, SearchStudy, StagedOptions, StagedSearch, Variant, default_storage

from ..search.synthetic import SyntheticObjective

MODEL = "smollm2-135m"


def _refused(capsys: pytest.CaptureFixture[str], *argv: str, says: str = "") -> str:
    """Run argv; assert exit 2 with one ``error:`` line and no model loaded; return that line."""
    rc = run(list(argv))
    cap = capsys.readouterr()
    lines = [ln for ln in (cap.out + cap.err).splitlines() if ln.strip()]
    assert rc == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: ") and " — " in lines[0], lines
    assert "loading" not in cap.out  # refused before the model's weights load
    assert says in lines[0], lines
    return lines[0]


def _files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def _study(d: Path) -> None:
    """A small finished study (synthetic objective: no training) with the search.json search writes."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # its handler may hold an earlier test's stderr
    try:
        study = SearchStudy(default_storage(d), fingerprint="fp")
        StagedSearch(study, SyntheticObjective(), LRPlan(max_runs=1), StagedOptions(max_r=8)).run(
            Variant(8, 16.0, "attention")
        )
    finally:
        optuna.logging.set_verbosity(before)
    (d / "search.json").write_text(json.dumps({"options": {"model": MODEL}, "fingerprint": "fp"}))


# -- 1. numbers ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--threads", "-1", "--threads must be >= 1"),
        ("--threads", "0", "--threads must be >= 1"),
        ("--steps", "0", "--steps must be >= 1"),
        ("--lr", "nan", "--lr must be"),
        ("--lr", "-1", "--lr must be"),
        ("--lr", "inf", "--lr must be"),
        ("--tolerance", "nan", "--tolerance must be in [0, 1)"),
        ("--tolerance", "1.5", "--tolerance must be in [0, 1)"),
        ("--max-forgetting", "-0.1", "--max-forgetting must be >= 0"),
        ("--max-forgetting", "nan", "--max-forgetting must be >= 0"),
        ("--max-r", "0", "--max-r must be >= 1"),
        ("--trials", "0", "--trials must be >= 1"),
        ("--val-examples", "0", "--val-examples must be >= 1"),
        ("--final-steps", "0", "--final-steps must be >= 1"),
        ("--seed", "99999999999999999999999", "--seed must be in"),
        ("--seed", "-1", "--seed must be in"),
        ("--time-budget", "0", "--time-budget must be positive"),
        ("--time-budget", "-2", "--time-budget must be positive"),
        ("--time-budget", "nan", "--time-budget must be positive"),
    ],
)
def test_a_bad_number_is_one_line_before_the_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, says: str
) -> None:
    out = tmp_path / "out"
    _refused(capsys, "search", MODEL, "--out", str(out), flag, value, says=says)
    assert not out.exists()


# -- 2. names checked up front -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--export", "bogus", "unknown export format 'bogus'"),
        ("--export", "peft,pft", "did you mean peft?"),
        ("--modules", "nosuch", "--modules 'nosuch'"),
        ("--modules", "attention,q_prj", "did you mean q_proj"),
        ("--modules", "attnetion", "did you mean attention?"),
        ("--modules", "re:(", "bad target regex"),
    ],
)
def test_a_bad_export_or_module_set_is_refused_before_any_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, says: str
) -> None:
    out = tmp_path / "out"
    _refused(capsys, "search", MODEL, "--out", str(out), flag, value, says=says)
    assert not out.exists()


def test_try_layers_checks_each_module_set_on_the_top_half(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ("search", MODEL, "--out", str(tmp_path / "o"), "--modules", "attention,re:.*q_proj", "--try-layers")
    _refused(capsys, *argv, says="--try-layers")


# -- 3. output paths ---------------------------------------------------------------------------------
def test_an_unusable_out_is_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("a regular file\n")
    _refused(capsys, "search", MODEL, "--out", str(afile), says="is an existing file")
    _refused(capsys, "search", MODEL, "--out", str(afile / "sub"), says="which is a file")
    _refused(capsys, "search", MODEL, "--out", "/proc/loratune/x", says="is not writable")
    assert afile.read_text() == "a regular file\n" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.parametrize(
    "url", ["nosuch://x", "postgresql://u@10.1.2.3/db", "sqlite:///{tmp}/afile/x.db", "not a url at all"]
)
def test_a_bad_storage_leaves_no_study_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str) -> None:
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "deep" / "out"
    started = time.monotonic()
    _refused(capsys, "search", MODEL, "--out", str(out), "--storage", url.format(tmp=tmp_path), says="storage")
    assert time.monotonic() - started < 30  # an unreachable host: a connect timeout of seconds, never a hang
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_server_url_connects_with_a_timeout() -> None:
    from loratune.search.storage import CONNECT_TIMEOUT_S, engine_kwargs

    assert engine_kwargs("postgresql://u@10.1.2.3/db") == {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    assert engine_kwargs("mysql+pymysql://u@h/db") == {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    assert engine_kwargs("postgresql://u@h/db?connect_timeout=1") is None  # the user's own wins
    assert engine_kwargs("sqlite:///x.db") is None and CONNECT_TIMEOUT_S <= 10


def test_report_out_unusable_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = tmp_path / "study"
    _study(study)
    (tmp_path / "afile").write_text("x")
    before = _files(tmp_path)
    _refused(capsys, "report", str(study), "--out", str(tmp_path / "afile" / "report.html"), says="which is a file")
    _refused(capsys, "report", str(study), "--out", str(tmp_path / "afile"), says="is an existing file")
    _refused(capsys, "report", str(study), "--out", "/proc/loratune", says="is not writable")
    assert _files(tmp_path) == before


def test_report_never_writes_into_its_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = tmp_path / "study"
    _study(study)
    before = _files(study)
    assert run(["report", str(study), "--out", str(tmp_path / "html")]) == 0
    capsys.readouterr()
    assert _files(study) == before
    assert (tmp_path / "html" / "report.html").is_file()


# -- 4. study folders --------------------------------------------------------------------------------
def _folders(tmp_path: Path) -> dict[str, Path]:
    f = {name: tmp_path / name for name in ("broken", "empty_db", "hostile", "empty", "valid_json_empty_db")}
    for p in f.values():
        p.mkdir()
    (f["broken"] / "search.json").write_text("{")
    (f["empty_db"] / "study.db").write_bytes(b"")
    (f["hostile"] / "search.json").write_text(
        json.dumps({"options": {"strategy": "staged"}, "storage_url": f"sqlite:///{tmp_path / 'evil.db'}"})
    )
    (f["valid_json_empty_db"] / "search.json").write_text(json.dumps({"options": {"model": MODEL}}))
    (f["valid_json_empty_db"] / "study.db").write_bytes(b"")
    f["missing"] = tmp_path / "missing"
    f["afile"] = tmp_path / "afile"
    f["afile"].write_text("x")
    return f


@pytest.mark.parametrize("name", ["broken", "empty_db", "hostile", "empty", "valid_json_empty_db", "missing", "afile"])
def test_a_bad_study_folder_is_one_line_for_report_and_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    folder = _folders(tmp_path)[name]
    before = _files(tmp_path)
    _refused(capsys, "report", str(folder))
    _refused(capsys, "search", MODEL, "--out", str(folder), "--resume")
    assert _files(tmp_path) == before  # the 0-byte study.db stays 0 bytes; no report.html
    assert not (tmp_path / "evil.db").exists() and not (tmp_path / "missing").exists()


# -- 5. Ctrl-C -----------------------------------------------------------------------------------------
def test_ctrl_c_mid_search_keeps_the_study_and_says_how_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import loratune.search.objective as objective
    import loratune.search.run as search_run
    from loratune.models import load_anatomy, resolve_source
    from loratune.search import SearchInputs

    inputs = SearchInputs(
        model=MODEL,
        anatomy=load_anatomy(resolve_source(MODEL)),
        train=[[1, 2, 3]] * 50,
        val=[[1, 2]] * 8,
        reference=[],
        data_digest="synthetic",
        baseline=Variant(8, 16.0, "attention"),
        recommended_lr=2e-4,
        runner=object(),  # never called: the objective below stands in for training
    )
    synthetic = SyntheticObjective()

    class Interrupted:
        calls = 0

        def __init__(self, *args: object, **kw: object) -> None:
            pass

        def __call__(self, config: Any, on_eval: Any) -> Any:
            Interrupted.calls += 1
            if Interrupted.calls == 3:
                raise KeyboardInterrupt
            return synthetic(config, on_eval)

    monkeypatch.setattr(search_run, "load_inputs", lambda config, log: inputs)
    monkeypatch.setattr(objective, "RunnerObjective", Interrupted)
    out = tmp_path / "out"
    rc = run(["search", MODEL, "--out", str(out), "--export", "none", "--lr-runs", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 130
    assert (
        f"interrupted: finished runs are kept in {out / 'study.db'}; continue with "
        f"`loratune search {MODEL} --out {out} --resume`" in err.replace("\n", "")
    )
    states = [r.state for r in SearchStudy(default_storage(out), fingerprint="", recover=False).records()]
    assert states == ["COMPLETE", "COMPLETE", "FAIL"]  # the interrupted trial is marked failed, not RUNNING


def test_ctrl_c_before_the_study_exists_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import loratune.search.run as search_run

    def interrupted(config: Any, log: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(search_run, "load_inputs", interrupted)
    rc = run(["search", MODEL, "--out", str(tmp_path / "out")])
    assert rc == 130 and "interrupted: nothing was kept" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "url", ["sqlite:///{tmp}/no.db?mode=ro", "sqlite+pysqlite:///{tmp}/no.db", "sqlite://", "nosuch://x"]
)
def test_report_storage_creates_no_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str) -> None:
    (tmp_path / "s").mkdir()
    _refused(capsys, "report", str(tmp_path / "s"), "--storage", url.format(tmp=tmp_path))
    assert [p.name for p in tmp_path.rglob("*")] == ["s"]  # SQLite creates a missing file on connect: not here


def test_a_search_refused_after_its_checks_leaves_no_sqlite_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import loratune.search.run as search_run
    from loratune.errors import DataError

    def bad_data(config: Any, log: Any) -> Any:
        raise DataError("the data is bad", "fix it")

    monkeypatch.setattr(search_run, "load_inputs", bad_data)
    url = f"sqlite:///{tmp_path / 'st' / 'x.db'}"
    _refused(capsys, "search", MODEL, "--out", str(tmp_path / "out"), "--storage", url, says="the data is bad")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor the database file was made
