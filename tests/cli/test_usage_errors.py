"""Usage errors through the real entry point (``loratune`` → ``cli.app.main``): typer's own message, exit
2, never a traceback — the vendored-click mismatch of typer ≥ 0.20 must not come back — and Ctrl-C's 130."""

from __future__ import annotations

import subprocess
import sys

import pytest

from loratune.cli import app as app_module
from loratune.cli.interrupt import keep_note


def loratune(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loratune.cli.app", *argv],
        capture_output=True,
        text=True,
        env={"COLUMNS": "100", "PATH": ""},
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("budget", "gpt2", "--r", "abc"), "Invalid value for '--r'"),
        (("inspect", "gpt2", "--bogus"), "No such option: --bogus"),
        (("budget",), "Missing argument"),
        (("nosuchcommand",), "No such command"),
        (("inspect", "gpt2", "extra"), "unexpected extra argument"),
    ],
)
def test_usage_error_is_typer_message_and_exit_2(argv: tuple[str, ...], says: str) -> None:
    p = loratune(*argv)
    assert p.returncode == 2, p.stderr
    assert says in p.stderr and "Traceback" not in p.stderr + p.stdout
    assert len(p.stderr.strip().splitlines()) <= 4


def test_help_exits_0() -> None:
    p = loratune("budget", "--help")
    assert p.returncode == 0 and "--targets" in p.stdout


def test_library_error_is_one_line_exit_2() -> None:
    p = loratune("budget", "gpt2", "--targets", "c_atn")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "error: target 'c_atn' matches no module of gpt2 — did you mean c_attn, c_fc?"
    ]


def test_ctrl_c_is_exit_130_with_what_was_kept(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*args: object, **kw: object) -> None:
        keep_note("finished runs are in runs/x/study.db; continue with --resume")
        raise KeyboardInterrupt

    monkeypatch.setattr(app_module, "app", interrupted)
    assert app_module.run(["search", "smollm2-135m"]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "interrupted: finished runs are in runs/x/study.db; continue with --resume"


def test_ctrl_c_inside_a_typer_command_is_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import typer

    demo = typer.Typer()

    @demo.command()
    def slow() -> None:
        raise KeyboardInterrupt  # typer turns this into Exit(130) and, not standalone, returns the code

    @demo.command()
    def other() -> None:
        pass

    monkeypatch.setattr(app_module, "app", demo)
    assert app_module.run(["slow"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted: nothing was kept"
