"""The report of a search that climbed the fidelity ladder: a table of each finalist per rung, the pick
taken at the top rung, and the LR sweeps that ended at an edge flagged."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from loratune.report import write_report
from loratune.report.load import load_study
from loratune.search import SearchConfig, SearchInputs, Variant, run_search

from ..search.synthetic import STEPS, SyntheticObjective


def _inputs(anatomy: Any) -> SearchInputs:
    return SearchInputs(model="smollm2-135m", anatomy=anatomy, train=[[1, 2, 3]] * 400, val=[[1, 2]] * 8,
                        reference=[], data_digest="synthetic", baseline=Variant(8, 16.0, "attention"),
                        recommended_lr=2e-4)  # fmt: skip


def test_the_report_shows_every_rung_and_picks_at_the_top(tmp_path: Path) -> None:
    from loratune.models import load_anatomy, resolve_source

    anatomy = load_anatomy(resolve_source("smollm2-135m"))
    config = SearchConfig(model="smollm2-135m", max_r=32, export="none", steps=STEPS, lr_runs=2)
    result = run_search(config, tmp_path, inputs=_inputs(anatomy), objective=SyntheticObjective())
    data = load_study(tmp_path)
    assert [r.steps for r in data.rungs] == [r.steps for r in result.outcome.ladder.rungs] == [24, 100]
    assert data.choice is not None and data.choice.chosen.variant == result.choice.chosen.variant
    html = (write_report(data, tmp_path / "report")[0]).read_text()
    ladder = html[html.index("<h2>Fidelity ladder</h2>") : html.index("<h2>Learning-rate sweeps</h2>")]
    assert "<th>8 steps (search)</th><th>24 steps</th><th>100 steps</th>" in ladder
    climbers = result.outcome.ladder.climbers  # the finalists and the capacity challenger, marked
    assert len(re.findall(r"<tr class=\"(?:chosen)?\"><td class=\"l\">", ladder)) == len(climbers)
    assert f"{result.outcome.ladder.challenger.label()} (capacity challenger)</td>" in ladder
    top = result.outcome.ladder.rungs[-1].choice.chosen
    assert f"{top.ppl:.4f} @ {top.learning_rate:g}" in ladder
    # a cap of 2 LR runs can never bracket an optimum: every sweep is flagged
    sweeps = html[html.index("<h2>Learning-rate sweeps</h2>") :]
    n = len(result.scores) + sum(len(r.scores) for r in result.outcome.ladder.rungs)
    assert f"{n} sweep(s) ended at an edge" in sweeps
    assert sweeps.count("the cap of 2 runs was hit") == n
