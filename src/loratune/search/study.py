"""A search's memory: an Optuna study in SQLite (or any Optuna RDB URL) where every training run is one
trial whose ``TrialResult`` lives in the trial's user attributes.

Three guarantees, whatever kills the process (kill -9 included):
- a finished trial (COMPLETE, PRUNED, or FAIL *with* a stored result) is never run again: runs are
  looked up by the hash of their canonical config before anything trains;
- none is lost: SQLite commits each ``tell`` in a transaction;
- a trial left RUNNING by a dead worker is marked FAIL on resume (a dead local pid at once, a remote
  worker once its Optuna heartbeat is stale), and its config runs again.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loratune.errors import ConfigError
from loratune.search.space import RunConfig, Variant
from loratune.search.storage import default_storage as default_storage  # where callers have always found it
from loratune.search.storage import engine_kwargs, make_storage, shown_url
from loratune.trial.types import TrialResult

if TYPE_CHECKING:
    import optuna

STUDY_NAME = "loratune"

# A run: (config, on_eval) → result. on_eval(step, val_loss) returns True to stop (prune) the run.
Objective = Callable[[RunConfig, Callable[[int, float], bool] | None], TrialResult]


@dataclass
class TrialRecord:
    """A study trial as plain data (what the report, the knee and the strategies read)."""

    number: int
    state: str
    key: str | None
    variant: Variant | None
    learning_rate: float | None
    stage: str
    result: TrialResult | None
    cached_from: int | None = None
    cached_study: str | None = None  # "self" or "other" (a study lent through cache_from)

    @property
    def val_loss(self) -> float:
        r = self.result
        if r is None or r.status != "ok" or r.val_loss_after is None or not math.isfinite(r.val_loss_after):
            return math.inf
        return r.val_loss_after

    @property
    def val_ppl(self) -> float:
        loss = self.val_loss
        return math.exp(loss) if math.isfinite(loss) else math.inf

    @property
    def tokens(self) -> int:
        return self.result.train_tokens if self.result else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "state": self.state,
            "key": self.key,
            "stage": self.stage,
            "variant": self.variant.to_dict() if self.variant else None,
            "learning_rate": self.learning_rate,
            "cached_from": self.cached_from,
            "cached_study": self.cached_study,
            "result": self.result.to_dict() if self.result else None,
        }


def run_counts(records: list[TrialRecord]) -> tuple[int, int]:
    """(trained, answered from the cache) among finished records: a cache answer has ``cached_study``."""
    trained = sum(1 for r in records if r.cached_study is None)
    return trained, len(records) - trained


class SearchStudy:
    """One persisted study plus the config-hash cache. ``cache_from`` lends other studies' results."""

    def __init__(
        self,
        storage: str | optuna.storages.BaseStorage,
        *,
        fingerprint: str,
        name: str = STUDY_NAME,
        sampler: Any = None,
        pruner: Any = None,
        cache_from: tuple[SearchStudy, ...] = (),
        create: bool = True,
        recover: bool = True,
    ) -> None:
        import optuna

        self.fingerprint = fingerprint
        self._storage = make_storage(storage) if isinstance(storage, str) else storage
        if not create and name not in _study_names(self._storage):
            where = shown_url(storage) if isinstance(storage, str) else "the storage"
            raise ConfigError(f"no study named {name!r} in {where}", "check the path or --storage URL")
        self.study = optuna.create_study(
            storage=self._storage,
            study_name=name,
            direction="minimize",
            sampler=sampler,
            pruner=pruner,
            load_if_exists=True,
        )
        stored = self.study.user_attrs.get("fingerprint")
        if stored is None and fingerprint:
            self.study.set_user_attr("fingerprint", fingerprint)
        elif fingerprint and stored != fingerprint:
            raise ConfigError(
                "this study was run with another model, data or training settings",
                "resume with the same options, or start a new study with another --out",
            )
        self.cache_from = cache_from
        self._cache: dict[str, TrialRecord] = {}
        # A reader (the report) leaves trials as they are; a worker frees those of dead workers first.
        self.recovered = self.recover() if recover else []

    # -- reading ---------------------------------------------------------------------------------
    def records(self) -> list[TrialRecord]:
        return [_record(t) for t in self.study.get_trials(deepcopy=False)]

    def finished(self) -> list[TrialRecord]:
        """Trials with a stored result, in order (cache hits included)."""
        return [r for r in self.records() if r.result is not None and r.state != "RUNNING"]

    def lookup(self, key: str, *, accept_pruned: bool = False, borrow: bool = True) -> tuple[TrialRecord, bool] | None:
        """The finished run with this key: ``(record, from_this_study)``, or None.

        A pruned run answers only a pruning request in its own study: anywhere else it is no result."""
        if key not in self._cache:
            for rec in self.finished():
                known = self._cache.get(rec.key or "")
                if rec.key and rec.cached_study != "self" and (known is None or _pruned(known)):
                    self._cache[rec.key] = rec
        mine = self._cache.get(key)
        if mine is not None and (accept_pruned or not _pruned(mine)):
            return mine, True
        for other in self.cache_from if borrow else ():
            hit = other.lookup(key, borrow=False)  # one hop: studies may lend to each other
            if hit is not None:
                return hit[0], False
        return None

    def tokens(self, *, borrowed: bool = False) -> int:
        """Training tokens this study's runs took. ``borrowed``: also count results lent by ``cache_from``
        (what the strategy would have trained alone); repeats inside this study never count twice."""
        allowed = (None, "other") if borrowed else (None,)
        return sum(r.tokens for r in self.finished() if r.cached_study in allowed)

    # -- recovery --------------------------------------------------------------------------------
    def recover(self) -> list[int]:
        """Mark FAIL the RUNNING trials of dead workers; return their numbers."""
        import optuna
        from optuna.trial import TrialState

        failed = []
        me = _host()
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            host, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
            if host == me and pid.isdigit() and not _alive(int(pid)):
                try:
                    self._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
                    failed.append(t.number)
                except optuna.exceptions.UpdateFinishedTrialError:
                    pass
        before = {t.number for t in self.study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # flagged experimental
            optuna.storages.fail_stale_trials(self.study)  # other machines' workers, by heartbeat
        after = {t.number for t in self.study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        return sorted(set(failed) | (after - before))

    # -- running ---------------------------------------------------------------------------------
    def ask(self) -> optuna.trial.Trial:
        with warnings.catch_warnings():
            # Optuna warns that heartbeats are meant for Study.optimize; we record them ourselves.
            warnings.simplefilter("ignore", UserWarning)
            trial = self.study.ask()
        # Name the worker at once, so a crash at any later point leaves a trial recover() can free.
        trial.set_user_attr("worker", f"{_host()}:{os.getpid()}")
        return trial

    def run(
        self, config: RunConfig, objective: Objective, *, trial: optuna.trial.Trial | None = None, prune: bool = False
    ) -> TrialRecord:
        """Run ``config`` once per study lifetime: a cached result is returned (and recorded as a trial
        pointing at its source, so every strategy's request shows up in its own study)."""
        from optuna.trial import TrialState

        key = config.key(self.fingerprint)
        found = self.lookup(key, accept_pruned=prune)
        trial = trial or self.ask()
        _set_config_attrs(trial, config, key)
        hit_result = found[0].result if found is not None else None
        if found is not None and hit_result is not None:
            hit, mine = found
            trial.set_user_attr("cached_from", hit.number)
            trial.set_user_attr("cached_study", "self" if mine else "other")
            trial.set_user_attr("result", hit_result.to_dict())
            return _record(self._tell(trial, hit_result))

        def on_eval(step: int, val_loss: float) -> bool:
            if not prune or not math.isfinite(val_loss):
                return False
            trial.report(val_loss, step)
            return bool(trial.should_prune())

        try:
            with _heartbeat(self._storage, trial._trial_id):
                result = objective(config, on_eval)
        except BaseException:
            # Ctrl-C or a bug: leave no RUNNING trial behind (the config runs again next time).
            self.study.tell(trial, state=TrialState.FAIL)
            raise
        trial.set_user_attr("result", result.to_dict())
        rec = _record(self._tell(trial, result))
        self._cache[key] = rec
        return rec

    def _tell(self, trial: optuna.trial.Trial, result: TrialResult) -> optuna.trial.FrozenTrial:
        """Finish the trial; Optuna's ``tell`` returns it as stored (a deep-copied ``FrozenTrial``)."""
        from optuna.trial import TrialState

        loss = result.val_loss_after
        if result.status == "ok" and loss is not None and math.isfinite(loss):
            return self.study.tell(trial, loss)
        if result.status == "pruned":
            return self.study.tell(trial, state=TrialState.PRUNED)
        # diverged or failed: a real, finished outcome that the sampler must not model
        return self.study.tell(trial, state=TrialState.FAIL)


def _study_names(storage: Any) -> list[str]:
    import optuna

    return [s.study_name for s in optuna.get_all_study_summaries(storage)]


def read_study_records(path: Path, *, name: str = STUDY_NAME) -> list[TrialRecord]:
    """Every trial of the study in the SQLite file ``path``, opened read-only: nothing is written to it,
    not even Optuna's schema (a reader must not turn a stray or empty file into a study).

    Raises ConfigError "not a loratune study" for a missing, empty or non-SQLite file, or one without a
    loratune study in it."""
    from urllib.parse import quote

    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError as e:
        raise ConfigError(f"{path} is not a loratune study ({type(e).__name__})", _READ_HINT) from None
    if head != b"SQLite format 3\x00":
        raise ConfigError(f"{path} is not a loratune study (not an SQLite database)", _READ_HINT)
    # SQLite's URI form: mode=ro opens read-only (a write, Optuna's CREATE TABLE included, then fails).
    return read_records_at(f"sqlite:///file:{quote(str(path.resolve()))}?mode=ro&uri=true", name=name, what=str(path))


def read_records_at(url: str, *, name: str = STUDY_NAME, what: str | None = None) -> list[TrialRecord]:
    """Every trial of the study ``name`` at an Optuna RDB URL, without creating tables, a study or an
    attribute: a reader changes nothing in the storage it reads."""
    import sqlite3

    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    what = what or shown_url(url)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url), skip_table_creation=True)
            if name not in _study_names(storage):
                raise ConfigError(f"{what} is not a loratune study (no study named {name!r})", _READ_HINT)
            study = optuna.load_study(study_name=name, storage=storage)
            return [_record(t) for t in study.get_trials(deepcopy=False)]
    except (sqlite3.Error, SQLAlchemyError, optuna.exceptions.OptunaError, RuntimeError, ImportError) as e:
        # RuntimeError: Optuna's schema-version check; ImportError: no driver for the URL
        raise ConfigError(f"{what} is not a loratune study ({type(e).__name__})", _READ_HINT) from None


_READ_HINT = "pass the --out directory of `loratune search` (and --storage URL when it used one)"


def _pruned(rec: TrialRecord) -> bool:
    return rec.result is not None and rec.result.status == "pruned"


def _set_config_attrs(trial: Any, config: RunConfig, key: str) -> None:
    trial.set_user_attr("key", key)
    trial.set_user_attr("variant", config.variant.to_dict())
    trial.set_user_attr("learning_rate", config.learning_rate)
    trial.set_user_attr("stage", config.stage)
    trial.set_user_attr("worker", f"{_host()}:{os.getpid()}")


def _record(t: Any) -> TrialRecord:
    ua = t.user_attrs
    return TrialRecord(
        number=t.number,
        state=t.state.name,
        key=ua.get("key"),
        variant=Variant.from_dict(ua["variant"]) if "variant" in ua else None,
        learning_rate=ua.get("learning_rate"),
        stage=ua.get("stage", ""),
        result=TrialResult.from_dict(ua["result"]) if "result" in ua else None,
        cached_from=ua.get("cached_from"),
        cached_study=ua.get("cached_study"),
    )


def _host() -> str:
    """This machine's name in a trial's ``worker`` attribute (``LORATUNE_HOST`` overrides it: a test plays
    a worker on another machine, whose death only its stale heartbeat can tell)."""
    return os.environ.get("LORATUNE_HOST") or socket.gethostname()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed, not yet reaped by its parent) still answers signal 0.
    try:
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except OSError:
        return True


@contextmanager
def beating(beat: Callable[[], None], name: str) -> Iterator[None]:
    """Call ``beat`` at once, then every heartbeat interval, from a background thread while the block runs.
    A storage hiccup must not kill training: that beat is skipped and the next retries (the main thread's
    next call to the storage reports a real loss)."""
    from loratune.search.storage import heartbeat_s

    stop = threading.Event()

    def loop() -> None:
        while True:
            with contextlib.suppress(Exception):
                beat()
            if stop.wait(heartbeat_s()):
                return

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def _heartbeat(storage: Any, trial_id: int) -> Iterator[None]:
    """Record Optuna heartbeats while a trial trains, so other workers can tell a dead one from a slow one."""
    from loratune.search.storage import has_heartbeat

    if not has_heartbeat(storage):  # the journal: a dead local worker is found by its pid instead
        yield
        return
    with beating(lambda: storage.record_heartbeat(trial_id), "loratune-heartbeat"):
        yield
