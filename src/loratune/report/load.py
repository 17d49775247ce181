"""Read a study directory (``search.json``, the study, ``best_config.json``) into plain data.

Reading changes nothing: the study is the folder's own ``study.db`` opened read-only (or the
``--storage`` URL the user passed on the command line — never one found in a file), and a file that is
not what search writes is a ConfigError naming it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loratune.errors import ConfigError
from loratune.search.config import SearchConfig
from loratune.search.knee import Choice, VariantScore, score_variants
from loratune.search.run import choose_for
from loratune.search.saved import (
    BEST_CONFIG,
    SEARCH_JSON,
    STUDY_DB,
    STUDY_JOURNAL,
    read_best_config,
    read_search_json,
)
from loratune.search.study import STUDY_NAME, TrialRecord, read_records_at, read_study_records


@dataclass
class LadderRung:
    """A rung of the fidelity ladder as the report reads it: its steps and its variants' best runs."""

    steps: int
    scores: list[VariantScore]
    choice: Choice | None


@dataclass
class StudyData:
    directory: Path
    options: dict[str, Any]  # the search's options (SearchConfig.to_dict()); empty without search.json
    records: list[TrialRecord]
    scores: list[VariantScore]
    choice: Choice | None  # the pick: the top ladder rung's knee when the search climbed one
    best: dict[str, Any] = field(default_factory=dict)  # best_config.json (stages, config) when written
    config: SearchConfig | None = None
    rungs: list[LadderRung] = field(default_factory=list)  # the fidelity ladder, lowest rung first
    short_choice: Choice | None = None  # the knee over the search's short runs alone


def load_study(directory: Path, storage: str | None = None) -> StudyData:
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"no study directory {directory}", "pass the --out directory of `loratune search`")
    config = read_search_json(directory / SEARCH_JSON).config if (directory / SEARCH_JSON).is_file() else None
    read = _reader(directory, storage)
    records = read(STUDY_NAME)
    best = read_best_config(directory / BEST_CONFIG) if (directory / BEST_CONFIG).is_file() else {}
    metric = config.metric if config else "loss"
    scores = score_variants((r for r in records if r.result is not None), metric)
    # Recomputed from the trials with the search's own rule, so a report of an unfinished (killed)
    # search still names its knee; the ladder's rungs are the studies best_config.json names.
    choice = _knee(config, scores)
    rungs = []
    for steps, name in _ladder_studies(best, directory / BEST_CONFIG):
        rung_scores = score_variants((r for r in read(name) if r.result is not None), metric)
        rungs.append(LadderRung(steps, rung_scores, _knee(config, rung_scores)))
    top = next((r.choice for r in reversed(rungs) if r.choice is not None), None)
    return StudyData(directory, config.to_dict() if config else {}, records, scores, top or choice, best, config,
                     rungs, choice)  # fmt: skip


def _ladder_studies(best: dict[str, Any], path: Path) -> list[tuple[int, str]]:
    """(steps, study name) of each ladder rung best_config.json lists; a malformed list is refused."""
    rungs = (best.get("ladder") or {}).get("rungs") or [] if isinstance(best.get("ladder"), dict) else []
    try:
        return [(int(r["steps"]), str(r["study"])) for r in rungs]
    except (TypeError, KeyError, ValueError):
        raise ConfigError(f"{path}: its ladder is not what `loratune search` writes", "run the search again") from None


def _knee(config: SearchConfig | None, scores: list[VariantScore]) -> Choice | None:
    finite = [s for s in scores if s.best.result is not None and s.score < float("inf")]
    if not finite:
        return None
    try:
        return choose_for(config or SearchConfig(model="?"), finite)
    except ConfigError:  # nothing meets --max-forgetting: the report still shows every trial
        return None


def _reader(directory: Path, storage: str | None) -> Callable[[str], list[TrialRecord]]:
    """Records of a study by name, from the folder's own study file or the ``--storage`` URL given."""
    sqlite = re.match(r"sqlite(\+\w+)?:(///)?", storage, re.IGNORECASE) if storage is not None else None
    if storage is not None and sqlite is not None:
        # A local file, opened read-only whatever the URL's query or driver says (SQLite would create a
        # missing file on connect); an in-memory database holds no study.
        path = storage[sqlite.end() :].split("?", 1)[0] if sqlite.group(2) else ""
        if not path:
            raise ConfigError(f"{storage} names no SQLite file", "pass --storage sqlite:///path/to/study.db")
        return lambda name: read_study_records(Path(path), name=name)
    if storage is not None:
        url = storage
        return lambda name: read_records_at(url, name=name)
    if (directory / STUDY_JOURNAL).is_file():  # a search with several local workers
        from loratune.search.storage import read_journal_records

        return lambda name: read_journal_records(directory / STUDY_JOURNAL, name=name)
    db = directory / STUDY_DB
    if not db.is_file():
        raise ConfigError(f"{directory} holds no study ({db} is missing)", "run `loratune search` first")
    return lambda name: read_study_records(db, name=name)
