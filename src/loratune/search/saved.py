"""The files a search leaves in its folder, read back safely: ``search.json`` (the options, for
``--resume`` and the report) and ``best_config.json`` (the pick, its stages).

A study folder may come from anywhere, so what these files say is data, never an address to follow:
the study's storage is the folder's own ``study.db`` unless the user passes ``--storage``. A file that
is not what search writes is refused with a ConfigError naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loratune.errors import ConfigError
from loratune.paths import write_atomic
from loratune.search.config import SearchConfig

SEARCH_JSON = "search.json"
BEST_CONFIG = "best_config.json"
STUDY_DB = "study.db"


@dataclass(frozen=True)
class SavedSearch:
    """``search.json``: the options a search ran with, and whether its study lives elsewhere (--storage)."""

    config: SearchConfig
    fingerprint: str | None = None
    custom_storage: bool = False  # the study was kept at a --storage URL (which is not kept here)
    sized_by_budget: dict[str, Any] | None = None  # what --time-budget chose, for the record

    def to_dict(self) -> dict[str, Any]:
        return {
            "options": self.config.to_dict(),
            "fingerprint": self.fingerprint,
            "custom_storage": self.custom_storage,
            "sized_by_budget": self.sized_by_budget,
        }


def write_search_json(out: Path, saved: SavedSearch) -> Path:
    path = out / SEARCH_JSON
    write_atomic(path, json.dumps(saved.to_dict(), indent=2) + "\n")
    return path


def _read_json_object(path: Path) -> dict[str, Any]:
    fix = f"restore {path.name} from the search that wrote it, or start a new search with another --out"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not a readable JSON file ({type(e).__name__})", fix) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object, got {type(data).__name__}", fix)
    return data


def read_search_json(path: Path) -> SavedSearch:
    """Parse ``search.json``; anything search did not write there is a ConfigError naming the file.
    Files of older versions (``storage``/``storage_url`` keys) still load; their URLs are not used."""
    data = _read_json_object(path)
    fix = f"restore {path.name} from the search that wrote it, or start a new search with another --out"
    known = {"options", "fingerprint", "custom_storage", "sized_by_budget", "storage", "storage_url"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}", fix)
    if "options" not in data:
        raise ConfigError(f"{path}: no options", fix)
    config = SearchConfig.from_dict(data["options"], source=str(path))
    fp = data.get("fingerprint")
    if fp is not None and not isinstance(fp, str):
        raise ConfigError(f"{path}: fingerprint must be a string", fix)
    custom = data.get("custom_storage", data.get("storage") is not None)
    if not isinstance(custom, bool):
        custom = True  # an old file's storage URL: the study is not in this folder
    sized = data.get("sized_by_budget")
    if sized is not None and not isinstance(sized, dict):
        raise ConfigError(f"{path}: sized_by_budget must be an object", fix)
    return SavedSearch(config, fp, custom, sized)


def read_best_config(path: Path) -> dict[str, Any]:
    """``best_config.json`` as written by search, shape-checked where the report reads it."""
    data = _read_json_object(path)
    fix = f"delete {path.name} (search writes it again) or restore it"
    config = data.get("config")
    if config is not None and not isinstance(config, dict):
        raise ConfigError(f"{path}: config must be an object", fix)
    stages = data.get("stages", [])
    if not isinstance(stages, list):
        raise ConfigError(f"{path}: stages must be a list", fix)
    for s in stages:
        ok = (
            isinstance(s, dict)
            and isinstance(s.get("name"), str)
            and isinstance(s.get("tried", []), list)
            and all(isinstance(t, str) for t in s.get("tried", []))
            and isinstance(s.get("winner"), (str, type(None)))
            and isinstance(s.get("note", ""), str)
        )
        if not ok:
            raise ConfigError(f"{path}: a stage must have a name, tried labels, a winner and a note", fix)
    return data


def saved_for_resume(out: Path, *, storage: str | None) -> SavedSearch:
    """What ``--resume`` continues in ``out``: its search.json, checked, with its study where it says.
    The study is ``out/study.db`` unless ``storage`` (the command line's --storage) names another."""
    path = out / SEARCH_JSON
    if not path.is_file():
        raise ConfigError(f"nothing to resume in {out} (no {SEARCH_JSON})", "drop --resume to start a new search")
    saved = read_search_json(path)
    if (out / BEST_CONFIG).is_file():
        read_best_config(out / BEST_CONFIG)  # rewritten at the end; a broken one is refused now, not then
    if storage is None and saved.custom_storage:
        raise ConfigError(
            f"the search in {out} kept its study at a --storage URL (not read from {SEARCH_JSON})",
            "pass the same --storage URL again",
        )
    if storage is None and not (out / STUDY_DB).is_file():
        raise ConfigError(f"nothing to resume in {out} (no {STUDY_DB})", "drop --resume to start a new search")
    if storage is None:
        from loratune.search.study import read_study_records

        # Read-only: an empty or foreign study.db is refused now, not turned into a new study after the
        # model has loaded.
        read_study_records(out / STUDY_DB)
    return saved
