"""Read a study directory (``search.json``, the study, ``best_config.json``) into plain data.

Reading changes nothing: the study is the folder's own ``study.db`` opened read-only (or the
``--storage`` URL the user passed on the command line — never one found in a file), and a file that is
not what search writes is a ConfigError naming it.
"""

from __future__ import annotations

import re
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
from loratune.search.study import TrialRecord, read_records_at, read_study_records


@dataclass
class StudyData:
    directory: Path
    options: dict[str, Any]  # the search's options (SearchConfig.to_dict()); empty without search.json
    records: list[TrialRecord]
    scores: list[VariantScore]
    choice: Choice | None
    best: dict[str, Any] = field(default_factory=dict)  # best_config.json (stages, config) when written
    config: SearchConfig | None = None


def load_study(directory: Path, storage: str | None = None) -> StudyData:
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"no study directory {directory}", "pass the --out directory of `loratune search`")
    config = read_search_json(directory / SEARCH_JSON).config if (directory / SEARCH_JSON).is_file() else None
    sqlite = re.match(r"sqlite(\+\w+)?:(///)?", storage, re.IGNORECASE) if storage is not None else None
    if storage is not None and sqlite is not None:
        # A local file, opened read-only whatever the URL's query or driver says (SQLite would create a
        # missing file on connect); an in-memory database holds no study.
        path = storage[sqlite.end() :].split("?", 1)[0] if sqlite.group(2) else ""
        if not path:
            raise ConfigError(f"{storage} names no SQLite file", "pass --storage sqlite:///path/to/study.db")
        records = read_study_records(Path(path))
    elif storage is not None:
        records = read_records_at(storage)
    elif (directory / STUDY_JOURNAL).is_file():  # a search with several local workers
        from loratune.search.storage import read_journal_records

        records = read_journal_records(directory / STUDY_JOURNAL)
    else:
        db = directory / STUDY_DB
        if not db.is_file():
            raise ConfigError(f"{directory} holds no study ({db} is missing)", "run `loratune search` first")
        records = read_study_records(db)
    best = read_best_config(directory / BEST_CONFIG) if (directory / BEST_CONFIG).is_file() else {}
    scores = score_variants((r for r in records if r.result is not None), config.metric if config else "loss")
    choice = None
    if scores:
        # Recomputed from the trials with the search's own rule, so a report of an unfinished (killed)
        # search still names its knee.
        try:
            choice = choose_for(config or SearchConfig(model="?"), scores)
        except ConfigError:  # nothing meets --max-forgetting: the report still shows every trial
            choice = None
    return StudyData(directory, config.to_dict() if config else {}, records, scores, choice, best, config)
