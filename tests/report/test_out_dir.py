"""The report's output folder is checked before anything is drawn or written (issue #11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loratune.errors import ConfigError
from loratune.outputs import check_output_dir
from loratune.report import StudyData, write_report
from loratune.search.outdir import removed_on_failure


def test_check_output_dir_refuses_files_and_unwritable_places_and_creates_nothing(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="is an existing file, not a folder"):
        check_output_dir(tmp_path / "afile")
    with pytest.raises(ConfigError, match=r"lies under .*afile, which is a file"):
        check_output_dir(tmp_path / "afile" / "a" / "b")
    with pytest.raises(ConfigError, match="is not writable"):
        check_output_dir(Path("/proc/loratune/x"))
    check_output_dir(tmp_path / "new" / "deep")  # fine: it can be made
    check_output_dir(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # the probe left nothing


def test_removed_on_failure_removes_only_what_it_made(tmp_path: Path) -> None:
    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError), removed_on_failure(tmp_path / "kept"):
        (tmp_path / "kept" / "x").write_text("x")
        raise RuntimeError
    assert (tmp_path / "kept" / "x").is_file()  # it existed before: left alone
    made = tmp_path / "a" / "b"
    with pytest.raises(RuntimeError), removed_on_failure(made):
        made.mkdir(parents=True)
        (made / "study.db").write_bytes(b"")
        raise RuntimeError
    assert not (tmp_path / "a").exists()
    with removed_on_failure(made):
        made.mkdir(parents=True)
    assert made.is_dir()  # success keeps it


def test_write_report_refuses_an_unusable_folder_before_drawing(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    data = StudyData(tmp_path, {}, [], [], None)
    for bad in (tmp_path / "afile", tmp_path / "afile" / "report.html"):
        with pytest.raises(ConfigError):
            write_report(data, bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
