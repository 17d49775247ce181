"""Where a study lives, opened the way one or many workers need it: an Optuna RDB storage from a URL
(``sqlite:///<out>/study.db`` by default; PostgreSQL for workers on several machines) with heartbeats and
Optuna's stale-trial retry, or an Optuna journal file for several workers on one machine.

Opening is the one place a search contacts a server: only the URL the user passed, once, with a connect
timeout; a failure is one ConfigError, and a SQLite folder made for it is removed again.

Which storage for which setup (Optuna's own advice, "Easy Parallelization" and ``RDBStorage``'s notes):
- one worker, no server: SQLite ``<out>/study.db`` (the default, as before);
- several workers on one machine, no server: the journal file ``<out>/study.journal``
  (``JournalStorage(JournalFileBackend(path, JournalFileOpenLock(path)))``). Optuna "would never recommend
  SQLite3 for parallel optimization": SQLite has no ``SELECT … FOR UPDATE``, so two workers claiming the
  same waiting trial upgrade their read locks at once and one of them fails with "database is locked"
  instead of waiting. The journal appends each operation under a lock file and every reader replays
  the log in one order, so claiming a waiting trial (WAITING → RUNNING) has exactly one winner. The
  journal has no heartbeat: a dead *local* worker is found by its pid (``workers.recover_pool``);
- workers on several machines: an RDB server (PostgreSQL) by ``--storage postgresql://…``; a dead
  remote worker is found by its Optuna heartbeat going stale (``heartbeat_s()`` / ``grace_s()``).

A failed-by-death trial is requeued by Optuna's ``RetryHeartbeatStaleTrialCallback`` (the 4.9+ name of
the deprecated ``RetryFailedTrialCallback``): a WAITING copy with the same params and user attributes
(the run's key and config), which the next free worker claims.
"""

from __future__ import annotations

import copy
import os
import re
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loratune.errors import ConfigError

if TYPE_CHECKING:
    import optuna

HEARTBEAT_S = 10  # defaults of heartbeat_s() / grace_s()
GRACE_S = 60
CONNECT_TIMEOUT_S = 5
JOURNAL_SCHEME = "journal:///"
STUDY_JOURNAL = "study.journal"
MAX_RETRY = 3  # a config whose worker died this many times is left failed (it would kill the next one too)


def default_storage(out_dir: Path) -> str:
    return f"sqlite:///{(out_dir / 'study.db').resolve()}"


def heartbeat_s() -> int:
    """Seconds between a training worker's heartbeats (``LORATUNE_HEARTBEAT_S``; tests shorten it)."""
    return _int_env("LORATUNE_HEARTBEAT_S", HEARTBEAT_S)


def grace_s() -> int:
    """Seconds without a heartbeat after which a run counts as dead (``LORATUNE_GRACE_S``)."""
    return _int_env("LORATUNE_GRACE_S", GRACE_S)


def _int_env(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


def journal_url(path: Path) -> str:
    return JOURNAL_SCHEME + str(Path(path).resolve()).lstrip("/")


def local_storage(out: Path, workers: int) -> str:
    """The default storage of a search in ``out``: the journal when several local workers share it (or
    a journal is already there, from such a run), else SQLite ``study.db``."""
    journal, db = Path(out) / STUDY_JOURNAL, Path(out) / "study.db"
    if workers > 1 and db.is_file() and not journal.is_file():
        raise ConfigError(
            f"the search in {out} keeps its study in SQLite ({db.name}), which several workers must not share",
            "resume it with --workers 1, or start it again with --workers N in another --out",
        )
    if workers > 1 or journal.is_file():
        return journal_url(journal)
    return f"sqlite:///{db.resolve()}"


class RequeueDeadRun:
    """Optuna's stale-trial retry, minus the dead worker's name: the WAITING copy must not look owned by a
    dead pid when the next worker claims it (``recover`` would fail it again at once)."""

    def __init__(self, max_retry: int | None = MAX_RETRY) -> None:
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # flagged experimental
            self._retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if "result" in trial.user_attrs:  # it finished after all: nothing to run again
            return
        trial = copy.deepcopy(trial)
        trial.user_attrs = {k: v for k, v in trial.user_attrs.items() if k != "worker"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._retry(study, trial)


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """Open (and create the tables of) the Optuna storage at ``url``: ``journal:///abs/path`` (several local
    workers) or an RDB URL; a ConfigError when it cannot.

    A server URL connects once, with a connect timeout of :data:`CONNECT_TIMEOUT_S` seconds: an
    unreachable host fails in seconds instead of hanging for the OS's TCP timeout."""

    from loratune.search.outdir import removed_on_failure

    if url.startswith(JOURNAL_SCHEME):
        return _journal(Path("/" + url[len(JOURNAL_SCHEME) :]), create=True)
    folder = Path(url[len("sqlite:///") :]).parent if url.startswith("sqlite:///") else None
    with warnings.catch_warnings(), removed_on_failure(folder or Path(".")):
        warnings.simplefilter("ignore")  # heartbeat_interval is flagged experimental
        try:
            if folder is not None:  # SQLite creates the file, not its folder (removed again on failure)
                folder.mkdir(parents=True, exist_ok=True)
            return _rdb(url)
        except Exception as e:  # bad URL, missing driver, unreachable server
            raise ConfigError(
                f"cannot open the study storage {shown_url(url)!r}: {type(e).__name__}: {str(e)[:160]}",
                "pass an Optuna RDB URL such as sqlite:///runs/x/study.db or postgresql://user@host/db",
            ) from None


SCHEMA_TRIES = 4


def _rdb(url: str) -> optuna.storages.BaseStorage:
    """Optuna's RDB storage at ``url``. Two processes opening a fresh server database at once (a search and a
    worker, or the tests' poll) both create its tables, and PostgreSQL lets only one create a type of a name:
    the other fails with a unique violation in ``pg_type`` (or "relation … already exists"). That one tries
    again and finds the tables."""
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(SCHEMA_TRIES):
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=_study_engine_kwargs(url),
                heartbeat_interval=heartbeat_s(),
                grace_period=grace_s(),
                heartbeat_stale_trial_callback=RequeueDeadRun(),
            )
        except (IntegrityError, ProgrammingError):
            if attempt == SCHEMA_TRIES - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _journal(path: Path, *, create: bool) -> optuna.storages.BaseStorage:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lock = JournalFileOpenLock(str(path))  # O_EXCL lock file on a local disk
        return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=lock))


def engine_kwargs(url: str) -> dict[str, Any] | None:
    """SQLAlchemy engine options for ``url``: a connect timeout for the server dialects whose drivers
    take ``connect_timeout`` (psycopg/psycopg2, PyMySQL/mysqlclient), unless the URL sets its own."""
    scheme = url.split(":", 1)[0].lower()
    if scheme.split("+")[0] in ("postgresql", "postgres", "mysql", "mariadb") and "connect_timeout" not in url:
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return None


def _study_engine_kwargs(url: str) -> dict[str, Any] | None:
    """``engine_kwargs`` plus, for a server, a pre-ping: a server that restarted under a long search is
    reconnected to instead of failing on a dead pooled connection."""
    kwargs = engine_kwargs(url)
    if not url.lower().startswith("sqlite"):
        kwargs = {**(kwargs or {}), "pool_pre_ping": True}
    return kwargs


def shown_url(url: str) -> str:
    """The URL as an error message may show it: a password is masked."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not even a URL: shown as given (it holds no parsable password)
        return url


def open_early(url: str | None) -> optuna.storages.BaseStorage | str | None:
    """A server ``--storage`` is opened now (a bad URL or an unreachable host fails before the model
    loads); a SQLite one only has its folder checked, and is opened with the study, so a search refused
    later (bad data) leaves no database file behind."""
    from loratune.outputs import check_output_dir

    if url is None:
        return None
    if url.startswith(JOURNAL_SCHEME):
        return url
    sqlite = re.match(r"sqlite(\+\w+)?:///", url, re.IGNORECASE)
    if sqlite is None:
        return make_storage(url)
    path = url[sqlite.end() :].split("?", 1)[0]
    if path:
        check_output_dir(Path(path).parent, "--storage")
    return url


def has_heartbeat(storage: Any) -> bool:
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return bool(is_heartbeat_enabled(storage))


def storage_errors() -> tuple[type[BaseException], ...]:
    """What a storage that went away raises (a server stopped, a network cut)."""
    import sqlite3

    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    return (optuna.exceptions.StorageInternalError, SQLAlchemyError, sqlite3.OperationalError, OSError)


class StorageLost(ConfigError):
    """The study's storage stopped answering mid-search: every worker stops; ``--resume`` continues."""


def storage_lost(url: str, error: BaseException) -> StorageLost:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return StorageLost(
        f"lost the study storage {shown_url(url)} ({type(error).__name__}: {first[:120]})",
        "nothing finished is lost: once it is back, run the same `loratune search … --resume` "
        "(or `loratune worker …` again)",
    )


def read_journal_records(path: Path, *, name: str = "loratune") -> list[Any]:
    """Every trial of the study ``name`` in the journal file ``path`` (nothing is written to it)."""
    import optuna

    from loratune.search.study import _READ_HINT, _record

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} is not a loratune study (no such file)", _READ_HINT)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            storage = _journal(path, create=False)
            if name not in [s.study_name for s in optuna.get_all_study_summaries(storage)]:
                raise ConfigError(f"{path} is not a loratune study (no study named {name!r})", _READ_HINT)
            study = optuna.load_study(study_name=name, storage=storage)
            return [_record(t) for t in study.get_trials(deepcopy=False)]
    except (ValueError, OSError, optuna.exceptions.OptunaError) as e:
        raise ConfigError(f"{path} is not a loratune study ({type(e).__name__})", _READ_HINT) from None


__all__ = [
    "CONNECT_TIMEOUT_S",
    "STUDY_JOURNAL",
    "RequeueDeadRun",
    "StorageLost",
    "default_storage",
    "engine_kwargs",
    "grace_s",
    "heartbeat_s",
    "journal_url",
    "local_storage",
    "make_storage",
    "open_early",
    "read_journal_records",
    "shown_url",
]
