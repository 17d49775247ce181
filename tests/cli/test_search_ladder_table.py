"""The terminal's fidelity-ladder table (cli/search_cmd.py): every climber per length, the capacity
challenger marked and explained, the pick marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loratune.search import SearchConfig, SearchInputs, Variant, run_search

from ..search.synthetic import STEPS, SyntheticObjective


def test_the_ladder_table_lists_every_climber_and_marks_the_challenger(
    tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    from loratune.cli import search_cmd
    from loratune.models import load_anatomy, resolve_source

    anatomy = load_anatomy(resolve_source("smollm2-135m"))  # a skeleton: no weights load
    inputs = SearchInputs(model="smollm2-135m", anatomy=anatomy, train=[[1, 2, 3]] * 100, val=[[1, 2]] * 8,
                          reference=[], data_digest="synthetic", baseline=Variant(8, 16.0, "attention"),
                          recommended_lr=2e-4)  # fmt: skip
    config = SearchConfig(model="smollm2-135m", max_r=32, export="none", steps=STEPS)
    result = run_search(config, tmp_path, inputs=inputs, objective=SyntheticObjective())
    ladder = result.outcome.ladder
    monkeypatch.setattr(search_cmd.console, "width", 200)  # one row per line, nothing cut
    search_cmd.print_result(result, tmp_path)
    out = capsys.readouterr().out
    table = out[out.index("fidelity ladder") :]
    for v in ladder.climbers:
        assert v.label() in table
    assert f"{ladder.challenger.label()} (challenger)" in table
    assert "challenger: the best variant's family at --max-r on every linear layer" in table
    chosen = result.choice.chosen.variant.label()
    assert f"{chosen} (challenger) ◀ chosen" in table or f"{chosen} ◀ chosen" in table
    top = ladder.rungs[-1].choice.chosen
    assert f"{top.ppl:.4f} @ {top.learning_rate:g}" in table
