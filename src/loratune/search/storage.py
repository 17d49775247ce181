"""Where a study lives: an Optuna RDB storage opened from a URL (``sqlite:///<out>/study.db`` by default).

Opening is the one place a search contacts a server: only the URL the user passed, once, with a connect
timeout; a failure is one ConfigError, and a SQLite folder made for it is removed again.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loratune.errors import ConfigError

if TYPE_CHECKING:
    import optuna

HEARTBEAT_S = 10
GRACE_S = 60


def default_storage(out_dir: Path) -> str:
    return f"sqlite:///{(out_dir / 'study.db').resolve()}"


CONNECT_TIMEOUT_S = 5


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """Open (and create the tables of) the Optuna RDB storage at ``url``; a ConfigError when it cannot.

    A server URL connects once, with a connect timeout of :data:`CONNECT_TIMEOUT_S` seconds: an
    unreachable host fails in seconds instead of hanging for the OS's TCP timeout."""
    import optuna

    from loratune.search.outdir import removed_on_failure

    folder = Path(url[len("sqlite:///") :]).parent if url.startswith("sqlite:///") else None
    with warnings.catch_warnings(), removed_on_failure(folder or Path(".")):
        warnings.simplefilter("ignore")  # heartbeat_interval is flagged experimental
        try:
            if folder is not None:  # SQLite creates the file, not its folder (removed again on failure)
                folder.mkdir(parents=True, exist_ok=True)
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs(url), heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S
            )
        except Exception as e:  # bad URL, missing driver, unreachable server
            raise ConfigError(
                f"cannot open the study storage {shown_url(url)!r}: {type(e).__name__}: {str(e)[:160]}",
                "pass an Optuna RDB URL such as sqlite:///runs/x/study.db or postgresql://user@host/db",
            ) from None


def engine_kwargs(url: str) -> dict[str, Any] | None:
    """SQLAlchemy engine options for ``url``: a connect timeout for the server dialects whose drivers
    take ``connect_timeout`` (psycopg/psycopg2, PyMySQL/mysqlclient), unless the URL sets its own."""
    scheme = url.split(":", 1)[0].lower()
    if scheme.split("+")[0] in ("postgresql", "postgres", "mysql", "mariadb") and "connect_timeout" not in url:
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return None


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
    sqlite = re.match(r"sqlite(\+\w+)?:///", url, re.IGNORECASE)
    if sqlite is None:
        return make_storage(url)
    path = url[sqlite.end() :].split("?", 1)[0]
    if path:
        check_output_dir(Path(path).parent, "--storage")
    return url


__all__ = ["CONNECT_TIMEOUT_S", "default_storage", "engine_kwargs", "make_storage", "open_early", "shown_url"]
