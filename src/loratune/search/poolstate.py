"""What the coordinator and the workers of one search both keep in its study, and read from it: the search's
options (``bind_options``: another search's are refused), who is alive (workers and the coordinator say
so in study system attributes), and the recovery of dead workers' runs (``recover_pool``). How the pieces
fit: ``search.workers``'s header.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

from loratune.errors import ConfigError
from loratune.search.config import SearchConfig, study_fingerprint
from loratune.search.storage import RequeueDeadRun, grace_s, has_heartbeat
from loratune.search.study import SearchStudy, TrialRecord, _alive, _host

if TYPE_CHECKING:
    from loratune.search.run import SearchInputs

POLL_S = 0.25
OPTIONS_ATTR = "search_options"
DIGEST_ATTR = "search_options_digest"
DONE_ATTR = "loratune:done"
COORDINATOR_ATTR = "loratune:coordinator"
WORKER_PREFIX = "loratune:worker:"
# Options that never change which runs a search makes (how it is run, what it writes at the end).
NOT_IN_DIGEST = ("train_final", "final_steps", "threads", "time_budget", "export", "device")
# A factory (for tests and other back ends): "path/to/file.py:function" → function(config) -> (inputs, objective)
FACTORY_ENV = "LORATUNE_WORKER_FACTORY"
# Staged runs tried ahead of need (a rank two steps up, while workers are idle) live in a side study, so the
# search's own study holds exactly what one worker would have run; the coordinator adopts what it needs.
AHEAD_SUFFIX = ".ahead"
WANTED_ATTR = "loratune:wanted"  # the side study's keys still worth running
# The fidelity ladder's rung studies, announced in the search's study so that workers serve them too:
# [{"name": …, "steps": …, "fingerprint": …}], in the order the coordinator opened them.
RUNGS_ATTR = "loratune:rungs"


# -- the search a study holds --------------------------------------------------------------------------
def options_digest(config: SearchConfig) -> str:
    data = {f.name: getattr(config, f.name) for f in fields(config) if f.name not in NOT_IN_DIGEST}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def bind_options(study: SearchStudy, config: SearchConfig) -> None:
    """Keep the search's options in the study (what ``loratune worker`` reads); refuse another search's:
    two searches with different options on one storage never mix their runs."""
    digest = options_digest(config)
    attrs = study.study.user_attrs
    if attrs.get(DIGEST_ATTR) is None:
        study.study.set_user_attr(OPTIONS_ATTR, replace(config, time_budget=None).to_dict())
        study.study.set_user_attr(DIGEST_ATTR, digest)
    elif attrs[DIGEST_ATTR] != digest:
        raise ConfigError(
            "this study holds another search (other strategy, ranks, modules, trials or seed)",
            "resume it with its own options, or use another --out / storage (or --study name)",
        )


def search_fingerprint(config: SearchConfig, inputs: SearchInputs) -> str:
    """The study fingerprint of ``config`` on ``inputs``, computed as ``run_search`` computes it."""
    base_lr = config.lr or inputs.recommended_lr
    settings = config.train_settings(base_lr, inputs.compute_dtype)
    return study_fingerprint(
        model=inputs.model,
        data_digest=inputs.data_digest,
        n_train=len(inputs.train),
        n_val=len(list(inputs.val)[: config.val_examples]),
        n_reference=len(list(inputs.reference)),
        settings=settings,
    )


# -- recovery ----------------------------------------------------------------------------------------
def recover_pool(study: SearchStudy) -> list[int]:
    """Fail the RUNNING trials of dead workers and requeue their configs (Optuna's retry callback): a dead
    local pid at once, a trial nobody claimed by name after ``grace_s()``, a remote one by heartbeat."""
    import optuna
    from optuna.trial import TrialState

    storage = study._storage
    requeue = RequeueDeadRun()
    me, now, failed = _host(), time.time(), []
    for t in study.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        host, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
        dead = host == me and pid.isdigit() and not _alive(int(pid))
        started = t.datetime_start.timestamp() if t.datetime_start else now
        nameless = "worker" not in t.user_attrs and now - started > grace_s()
        if not (dead or nameless):
            continue
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                failed.append(t.number)
                requeue(study.study, storage.get_trial(t._trial_id))
        except optuna.exceptions.UpdateFinishedTrialError:
            pass
    if has_heartbeat(storage):
        before = {t.number for t in study.study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        with contextlib.suppress(optuna.exceptions.OptunaError), _quiet():  # flagged experimental
            optuna.storages.fail_stale_trials(study.study)  # requeues through the storage's callback
        after = {t.number for t in study.study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        failed += sorted(after - before)
    return sorted(set(failed))


def _sys_attrs(study: SearchStudy) -> dict[str, Any]:
    """The study's system attributes (Optuna 5 keeps them on the storage only)."""
    attrs: dict[str, Any] = study.study._storage.get_study_system_attrs(study.study._study_id)
    return attrs


def _sys_set(study: SearchStudy, key: str, value: Any) -> None:
    study.study._storage.set_study_system_attr(study.study._study_id, key, value)


def _live_workers(study: SearchStudy) -> list[str]:
    """Workers that announced themselves and are alive: a local pid that runs, a remote one seen lately."""
    me, now, live = _host(), time.time(), []
    for name, seen in _sys_attrs(study).items():
        if not name.startswith(WORKER_PREFIX):
            continue
        host, _, pid = name[len(WORKER_PREFIX) :].rpartition(":")
        if (host == me and pid.isdigit() and _alive(int(pid))) or (host != me and now - float(seen) < grace_s()):
            live.append(name[len(WORKER_PREFIX) :])
    return live


def _coordinator_alive(study: SearchStudy) -> bool:
    info = _sys_attrs(study).get(COORDINATOR_ATTR)
    if not isinstance(info, dict):
        return False
    if info.get("host") == _host():
        return _alive(int(info.get("pid", 0)))
    return bool(time.time() - float(info.get("time", 0)) < grace_s())


def _distinct(records: list[TrialRecord]) -> int:
    return sum(1 for r in records if r.cached_study != "self")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
