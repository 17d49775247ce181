"""Read a study directory (``search.json``, the Optuna storage, ``best_config.json``) into plain data."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loratune.errors import ConfigError
from loratune.search.final import BEST_CONFIG, SEARCH_JSON
from loratune.search.knee import Choice, VariantScore, choose, score_variants
from loratune.search.study import SearchStudy, TrialRecord, default_storage


@dataclass
class StudyData:
    directory: Path
    options: dict[str, Any]
    records: list[TrialRecord]
    scores: list[VariantScore]
    choice: Choice | None
    best: dict[str, Any] = field(default_factory=dict)  # best_config.json (stages, config) when written


def load_study(directory: Path, storage: str | None = None) -> StudyData:
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"no study directory {directory}", "pass the --out directory of `loratune search`")
    meta: dict[str, Any] = {}
    if (directory / SEARCH_JSON).is_file():
        meta = json.loads((directory / SEARCH_JSON).read_text())
    url = storage or meta.get("storage_url") or default_storage(directory)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file():
        raise ConfigError(
            f"{directory} holds no study ({url[len('sqlite:///') :]} is missing)", "run `loratune search` first"
        )
    study = SearchStudy(url, fingerprint="", create=False, recover=False)
    records = study.records()
    scores = score_variants(r for r in records if r.result is not None)
    options = meta.get("options", {})
    best = json.loads((directory / BEST_CONFIG).read_text()) if (directory / BEST_CONFIG).is_file() else {}
    choice = None
    if scores:
        # Recomputed from the trials, so a report of an unfinished (killed) search still names its knee.
        try:
            choice = choose(
                scores,
                cost=options.get("cost", "params"),
                tolerance=options.get("tolerance", 0.01),
                max_forgetting=options.get("max_forgetting"),
            )
        except ConfigError:  # nothing meets --max-forgetting: the report still shows every trial
            choice = None
    return StudyData(directory, options, records, scores, choice, best)
