"""Progress output: plain lines with an ETA in a pipe, rich's live bar (with its ETA) in a terminal."""

from __future__ import annotations

import io
import re

from loratune.trial.progress import _clock, progress


def test_a_pipe_gets_a_plain_line_about_every_tenth_and_at_the_end() -> None:
    stream = io.StringIO()
    with progress("training", 25, stream=stream) as bar:
        for step in range(25):
            bar.advance(info=f"loss {1 / (step + 1):.4f}")
    lines = stream.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == [f"{k}/25" for k in (3, 6, 9, 12, 15, 18, 21, 24, 25)]
    assert all(re.search(r"\d:\d\d:\d\d elapsed, eta \d:\d\d:\d\d$", line) for line in lines)
    assert "\x1b" not in stream.getvalue() and "\r" not in stream.getvalue()
    assert lines[-1].startswith("training 25/25  loss 0.0400  ") and lines[-1].endswith("eta 0:00:00")


def test_disabled_or_empty_work_prints_nothing() -> None:
    stream = io.StringIO()
    for enabled, total in ((False, 10), (True, 0)):
        with progress("training", total, enabled=enabled, stream=stream) as bar:
            bar.advance(info="x")
    assert stream.getvalue() == ""


def test_a_terminal_gets_the_live_bar_with_an_eta_within_80_columns(monkeypatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich treats the stream as a terminal
    monkeypatch.setenv("COLUMNS", "80")
    stream = io.StringIO()
    with progress("training", 169, stream=stream) as bar:
        bar.advance(12, info="loss 4.3542  12,345 tok/s")
    frames = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stream.getvalue()).replace("\r", "\n").splitlines()
    last = [f for f in frames if f.strip()][-1]
    assert last.startswith("training ") and "12/169" in last and "12,345 tok/s" in last and " eta " in last
    assert len(last) <= 80


def test_clock() -> None:
    assert _clock(0) == "0:00:00" and _clock(3725.4) == "1:02:05" and _clock(float("nan")) == "-:--:--"
