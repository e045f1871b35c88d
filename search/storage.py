"""One database URL for everything: Optuna's RDB storage and kdsearch's own tables.

SQLite (the embedded default) gets WAL and a busy timeout, so a few processes can share
it; PostgreSQL (``postgresql+psycopg://``) is the path to many workers and machines.
Pools are bounded and pre-pinged so a restarted database costs a retry, not a crash.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import optuna
import sqlalchemy as sa
from optuna.exceptions import StorageInternalError
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial
from sqlalchemy.engine import Engine

from kdsearch.distill.errors import KDSearchError

from . import tables

log = logging.getLogger("kdsearch.storage")

DEFAULT_URL = "sqlite:///./kdsearch.db"
HEARTBEAT_INTERVAL_S = 10
GRACE_PERIOD_S = 30


class StorageError(ValueError):
    """The database URL is unusable."""


GRPC_SCHEME = "grpc://"


def parse_grpc_url(url: str) -> tuple[str, int]:
    """``grpc://HOST:PORT`` (a ``kdsearch storage-proxy``) as (host, port)."""
    host, sep, port = url[len(GRPC_SCHEME) :].rpartition(":")
    if not url.startswith(GRPC_SCHEME) or not sep or not host or not port.isdigit():
        raise StorageError(f"--storage must be grpc://HOST:PORT, got {url!r}")
    if not 0 < int(port) < 65536:
        raise StorageError(f"--storage port must be 1..65535, got {port}")
    return host, int(port)


def normalize_url(url: str) -> str:
    """``postgresql://`` uses psycopg 3 (the driver we install); SQLite paths are checked."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if path and path != ":memory:" and not Path(path).expanduser().parent.exists():
            raise StorageError(f"database folder {Path(path).parent} does not exist")
        return url
    if url.startswith(("postgresql+psycopg://", "sqlite://")):
        return url
    raise StorageError(
        f"unsupported database URL {url.split('://')[0]!r}://...: use sqlite:///PATH or "
        "postgresql+psycopg://USER@HOST/DB"
    )


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


# A worker needs few connections; the REST service asks for more (Settings.db_pool_size).
POOL_SIZE = 2
MAX_OVERFLOW = 3


def engine_kwargs(
    url: str, pool_size: int = POOL_SIZE, max_overflow: int = MAX_OVERFLOW
) -> dict[str, Any]:
    if is_sqlite(url):
        return {"connect_args": {"timeout": 60}, "pool_pre_ping": True}
    return {
        "pool_pre_ping": True,
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "pool_recycle": 1800,
    }


def _enable_wal(url: str) -> None:
    path = url[len("sqlite:///") :]
    if not path or path == ":memory:":
        return
    con = sqlite3.connect(path, timeout=60)
    try:
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


def make_engine(
    url: str,
    pool_size: int = POOL_SIZE,
    max_overflow: int = MAX_OVERFLOW,
    *,
    pooled: bool = True,
) -> Engine:
    """kdsearch's engine. ``pooled=False``: no connection is kept between uses (a worker
    behind the storage proxy touches kdsearch's tables only now and then)."""
    url = normalize_url(url)
    if is_sqlite(url):
        _enable_wal(url)
    kwargs = engine_kwargs(url, pool_size, max_overflow)
    if not pooled:
        kwargs = {k: v for k, v in kwargs.items() if k not in ("pool_size", "max_overflow")}
        kwargs["poolclass"] = sa.pool.NullPool
    return sa.create_engine(url, **kwargs)


class SchemaNotReady(KDSearchError):
    """kdsearch's tables are missing or older than this code, and the caller only reads."""


def schema_ready(engine: Engine) -> Engine:
    """``engine``, once :func:`prepare_schema` has brought its tables up to date."""
    prepare_schema(engine)
    return engine


def prepare_schema(engine: Engine, *, upgrade: bool = True) -> None:
    """Bring kdsearch's tables to this code's schema (Alembic head), saying so in the log;
    with ``upgrade=False`` only check, and raise :class:`SchemaNotReady` with the command
    that fixes it. ``make_engine`` never migrates: the processes that own the database (the
    service, a worker, the storage proxy, creating a study) call this once at start-up."""
    from kdsearch import migrations

    current, head = migrations.current_revision(engine), migrations.head_revision()
    if current == head:
        return
    where = engine.url.render_as_string(hide_password=True)
    if not upgrade:
        state = "has no kdsearch tables" if current is None else f"is at schema {current}"
        raise SchemaNotReady(
            f"the database {where} {state}, this kdsearch needs {head}: run "
            f"`kdsearch db upgrade --database-url {where}` (or start `kdsearch serve`)"
        )
    log.info("kdsearch tables in %s: upgrading schema %s -> %s", where, current or "none", head)
    migrations.upgrade(engine)


def _proxy_down(exc: BaseException) -> bool:
    """A gRPC call to ``kdsearch storage-proxy`` that found no proxy (stopped, restarting)."""
    import grpc

    return isinstance(exc, grpc.RpcError) and exc.code() in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    )


def _outage(exc: BaseException) -> BaseException | None:
    seen: BaseException | None = exc
    for _ in range(20):  # the cause/context chain (Optuna wraps, and re-raises in finally)
        if seen is None:
            break
        if isinstance(seen, sa.exc.OperationalError | sa.exc.InterfaceError):
            return seen
        if isinstance(seen, sa.exc.DBAPIError) and seen.connection_invalidated:
            return seen
        if _proxy_down(seen):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def database_unavailable(exc: BaseException) -> bool:
    """Is this (or what caused it) the database being unreachable, e.g. restarting?

    Connection-level errors only (refused, dropped, shutting down; SQLite's "database is
    locked"; no storage proxy answering a ``grpc://`` worker): worth waiting out. A schema
    or data error is not, and stays fatal.
    """
    return _outage(exc) is not None


def first_line(exc: BaseException) -> str:
    """The driver's own words for an outage (not Optuna's wrapper), on one line."""
    cause = _outage(exc)
    if isinstance(cause, sa.exc.DBAPIError) and cause.orig is not None:
        text = str(cause.orig).strip()
    elif cause is not None and not isinstance(cause, sa.exc.DBAPIError):  # the proxy
        details = getattr(cause, "details", lambda: None)() or str(cause)
        text = f"storage proxy: {details}".strip()
    else:
        text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


T = TypeVar("T")


def wait_for_database(
    connect: Callable[[], T], wait_s: float, *, sleep: Callable[[float], None] = time.sleep
) -> T:
    """``connect()``, retried while the database is unreachable, for up to ``wait_s`` seconds.

    For start-up: a worker started before its database (docker compose, a reboot) waits for
    it instead of dying. Errors that are not an outage are raised at once; so is the last
    outage error once ``wait_s`` has passed.
    """
    deadline = time.monotonic() + wait_s
    pause = 1.0
    while True:
        try:
            return connect()
        except Exception as exc:
            left = deadline - time.monotonic()
            if not database_unavailable(exc) or left <= 0:
                raise
            log.warning(
                "the database is unreachable (%s); retrying in %.0fs (giving up in %.0fs)",
                first_line(exc),
                min(pause, left),
                left,
            )
            sleep(min(pause, left))
            pause = min(30.0, pause * 2)


class OutageTolerantStorage(RDBStorage):
    """``RDBStorage`` whose heartbeat outlives a database outage.

    Optuna's heartbeat thread dies at its first failed write (a traceback, then silence), so
    a trial still running when the database restarts would look dead to other workers once
    the grace period passed, and be failed under its worker. Here a failed beat is logged
    and the next one tried on schedule; only an outage longer than the grace period makes
    the trial stale, as it should.
    """

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except (StorageInternalError, sa.exc.SQLAlchemyError) as exc:
            if not database_unavailable(exc):
                raise
            log.warning(
                "heartbeat of trial id %d not recorded, the database is unreachable (%s); "
                "trying again in %ss",
                trial_id,
                first_line(exc),
                self.heartbeat_interval,
            )


class SlotReleasingRetry:
    """Heartbeat-stale trials: fail them, enqueue a retry, and give their budget slot back.

    Optuna calls this once per stale trial, from whichever worker notices first.
    """

    def __init__(self, engine: Engine, max_retry: int = 3) -> None:
        self._engine = engine
        self._retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._retry(study, trial)
        tables.release(self._engine, study.study_name)


def make_storage(
    url: str,
    engine: Engine | None = None,
    *,
    heartbeat_interval: int = HEARTBEAT_INTERVAL_S,
    grace_period: int = GRACE_PERIOD_S,
    on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    pool_size: int = POOL_SIZE,
    max_overflow: int = MAX_OVERFLOW,
) -> RDBStorage:
    url = normalize_url(url)
    if is_sqlite(url):
        _enable_wal(url)
    engine = engine or make_engine(url)
    return OutageTolerantStorage(
        url,
        engine_kwargs=engine_kwargs(url, pool_size, max_overflow),
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        heartbeat_stale_trial_callback=on_stale or SlotReleasingRetry(engine),
    )
