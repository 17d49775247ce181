"""The report from a (synthetic) study: every trial, escaped text, inlined figures; renders in Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from loratune.paths import write_atomic
from loratune.report import load_study, write_report
from loratune.search import LRPlan, SearchStudy, StagedOptions, StagedSearch, Variant, default_storage
from loratune.search.final import SEARCH_JSON, best_config, write_outputs
from loratune.trial.types import TrialResult

from ..search.synthetic import SyntheticObjective

EVIL = '<script>alert("x")</script>'
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class EvilObjective(SyntheticObjective):
    """Synthetic runs whose first run fails with a message holding markup (as a data error might)."""

    def __call__(self, config, on_eval):  # type: ignore[no-untyped-def]
        if not self.ran:
            self.ran.append(config)
            return TrialResult(status="failed", message=f"bad row {EVIL}", train_tokens=0)
        return super().__call__(config, on_eval)


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from loratune.models import load_anatomy, resolve_source

    d = tmp_path_factory.mktemp("study")
    study = SearchStudy(default_storage(d), fingerprint="fp")
    out = StagedSearch(study, EvilObjective(), LRPlan(), StagedOptions(max_r=32)).run(Variant(8, 16.0))
    options = {"model": "smollm2-135m", "data": f"{EVIL}.jsonl", "strategy": "staged", "cost": "params"}
    write_atomic(d / SEARCH_JSON, json.dumps({"options": options, "storage_url": default_storage(d)}))
    anatomy = load_anatomy(resolve_source("smollm2-135m"))
    write_outputs(d, best_config(out, [study], anatomy, "smollm2-135m", {}, {}), [])
    write_report(load_study(d), d)
    return d


def test_report_lists_every_trial_and_escapes_text(study_dir: Path) -> None:
    page = (study_dir / "report.html").read_text()
    data = load_study(study_dir)
    assert "<script" not in page.lower()  # neither ours nor the data's
    assert page.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") == 2  # data path + trial message
    rows = re.findall(r"<tr class=\"[a-z]*\"><td>(\d+)</td>", page)
    assert [int(n) for n in rows] == [r.number for r in data.records]
    # the chosen trial is highlighted and named with its reason
    assert data.choice is not None
    assert f'<tr class="chosen"><td>{data.choice.chosen.best.number}</td>' in page
    assert "r=32 α=32 all-linear" in page and "Why:" in page
    # figures: inlined as base64 and written beside the page
    assert page.count("data:image/png;base64,") == 3  # no memory estimates in synthetic runs
    for name in ("ppl_vs_rank.png", "pareto.png", "loss_curves.png"):
        assert (study_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_renders_in_headless_chromium(study_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    # A real browser is part of the suite: `make test` installs Debian's chromium; missing is a failure.
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} not found: apt-get install -y chromium (make test does it)"

    shot = tmp_path / "shot.png"
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,2400", f"--screenshot={shot}", (study_dir / "report.html").resolve().as_uri(),
    ]  # fmt: skip
    subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    assert shot.is_file(), "chromium wrote no screenshot"
    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 2400)
    colors = img.getcolors(maxcolors=1 << 20) or []
    assert len(colors) > 200  # text, tables and plots, not a blank page
    # the top of the page is not blank either (the title and the chosen config are drawn there)
    top = img.crop((0, 0, 1280, 400)).convert("L")
    assert top.getextrema()[0] < 100
