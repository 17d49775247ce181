"""A study folder is data from anywhere: report and --resume never follow a URL found in it, never write
into its study, and name the file they refuse."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from loratune.errors import ConfigError
from loratune.report import load_study
from loratune.search import LRPlan, SearchStudy, StagedOptions, StagedSearch, Variant, default_storage

from ..search.synthetic import SyntheticObjective


def _study(d: Path, r: int = 8) -> set[Any]:
    """A small finished study in ``d``; returns the variants it ran."""
    study = SearchStudy(default_storage(d), fingerprint="fp")
    StagedSearch(study, SyntheticObjective(), LRPlan(max_runs=1), StagedOptions(max_r=r)).run(
        Variant(r, 2.0 * r, "attention")
    )
    return {rec.variant for rec in study.records()}


def _variants(data: Any) -> set[Any]:
    return {rec.variant for rec in data.records}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _app() -> Any:
    import typer

    from loratune.cli.report_cmd import report
    from loratune.cli.search_cmd import search

    app = typer.Typer(pretty_exceptions_enable=False)
    app.command()(search)
    app.command()(report)
    return app


def test_report_reads_the_folders_own_study_not_a_url_from_search_json(tmp_path: Path) -> None:
    mine, other = tmp_path / "mine", tmp_path / "other"
    n_mine = _study(mine, r=4)
    n_other = _study(other, r=16)
    assert n_mine != n_other
    hostile = {"options": {"model": "m"}, "storage_url": default_storage(other), "storage": default_storage(other)}
    (mine / "search.json").write_text(json.dumps(hostile))
    assert _variants(load_study(mine)) == n_mine
    # without its own study.db the folder holds no study, whatever search.json points at
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "search.json").write_text(json.dumps(hostile))
    with pytest.raises(ConfigError, match="holds no study"):
        load_study(tmp_path / "empty")
    # --storage on the command line is the way to read another storage
    assert _variants(load_study(tmp_path / "empty", storage=default_storage(other))) == n_other


def test_report_never_writes_into_its_input(tmp_path: Path) -> None:
    d = tmp_path / "s"
    _study(d)
    db = d / "study.db"
    before = _digest(db)
    load_study(d)
    assert _digest(db) == before
    # an empty study.db stays empty: no Optuna schema written into it
    (tmp_path / "zero").mkdir()
    (tmp_path / "zero" / "study.db").write_bytes(b"")
    with pytest.raises(ConfigError, match="not a loratune study"):
        load_study(tmp_path / "zero")
    assert (tmp_path / "zero" / "study.db").stat().st_size == 0
    with pytest.raises(ConfigError, match="not a loratune study"):  # nor through --storage
        load_study(tmp_path / "zero", storage=f"sqlite:///{tmp_path / 'zero' / 'study.db'}")
    assert (tmp_path / "zero" / "study.db").stat().st_size == 0
    # a SQLite file that is not an Optuna study, and a file that is not SQLite
    (tmp_path / "foreign").mkdir()
    with sqlite3.connect(tmp_path / "foreign" / "study.db") as con:
        con.execute("CREATE TABLE notes (x TEXT)")
    foreign = _digest(tmp_path / "foreign" / "study.db")
    with pytest.raises(ConfigError, match="not a loratune study"):
        load_study(tmp_path / "foreign")
    assert _digest(tmp_path / "foreign" / "study.db") == foreign
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "study.db").write_text("hello")
    with pytest.raises(ConfigError, match="not a loratune study"):
        load_study(tmp_path / "junk")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("search.json", "{not json", "search.json is not a readable JSON file"),
        ("search.json", "[1, 2]", "search.json must hold a JSON object"),
        ("search.json", json.dumps({"options": {"model": "m", "steps": "x"}}), "option steps must be int"),
        ("search.json", json.dumps({"options": {"model": "m", "evil": 1}}), r"unknown option\(s\) evil"),
        ("search.json", json.dumps({"options": {"model": "m"}, "run": "rm -rf /"}), r"unknown key\(s\) run"),
        ("best_config.json", "{", "best_config.json is not a readable JSON file"),
        ("best_config.json", json.dumps({"stages": [{"name": 1}]}), "best_config.json: a stage must have"),
        ("best_config.json", json.dumps({"config": [1]}), "best_config.json: config must be an object"),
    ],
)
def test_a_broken_file_is_a_config_error_naming_it(tmp_path: Path, name: str, text: str, message: str) -> None:
    d = tmp_path / "s"
    _study(d)
    if name == "best_config.json":
        (d / "search.json").write_text(json.dumps({"options": {"model": "smollm2-135m"}}))
    (d / name).write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_study(d)
    # --resume refuses the same file, before any model loads
    res = CliRunner().invoke(_app(), ["search", "smollm2-135m", "--out", str(d), "--resume"])
    assert isinstance(res.exception, ConfigError) and name in str(res.exception)
    assert res.exception.hint  # one line: problem — fix


def test_resume_uses_the_folders_study_unless_storage_is_given(tmp_path: Path) -> None:
    d = tmp_path / "s"
    d.mkdir()
    options = {"model": "smollm2-135m"}
    # an old search.json naming a storage URL: resume does not open it, it asks for --storage
    (d / "search.json").write_text(json.dumps({"options": options, "storage": "sqlite:////tmp/elsewhere.db"}))
    res = CliRunner().invoke(_app(), ["search", "smollm2-135m", "--out", str(d), "--resume"])
    assert isinstance(res.exception, ConfigError) and "pass the same --storage URL again" in str(res.exception.hint)
    assert not Path("/tmp/elsewhere.db").exists()
    # a default-storage search.json without its study.db: nothing to resume
    (d / "search.json").write_text(json.dumps({"options": options, "custom_storage": False}))
    res = CliRunner().invoke(_app(), ["search", "smollm2-135m", "--out", str(d), "--resume"])
    assert isinstance(res.exception, ConfigError) and "no study.db" in str(res.exception)
