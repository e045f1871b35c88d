"""A gRPC storage proxy in front of the database, for workers that hold no connection.

``kdsearch storage-proxy`` runs Optuna's gRPC proxy (``run_grpc_proxy_server``) on one
process's storage: the database sees that process's pool, however many workers there are.
Workers point their Optuna storage at it (``kdsearch worker --storage grpc://HOST:PORT``)
and open a connection to kdsearch's own tables only for the moment they use them (claims,
job heartbeats, artifact records: ``make_engine(pooled=False)``).

Optuna's gRPC client has no heartbeat, and kdsearch relies on heartbeats to fail and retry
the trial of a worker that died. So a proxied worker sends its trial's heartbeat as the
system attribute :data:`HEARTBEAT_ATTR` (:class:`TrialBeat`); the proxy's storage
(:class:`HeartbeatRelay`) records it as Optuna's own heartbeat instead of storing it, and a
reaper thread in the proxy runs Optuna's ``fail_stale_trials`` on every active study, with
kdsearch's retry-and-release callback: a dead worker's trial is failed, retried and its
budget slot given back, as without the proxy.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

import optuna
from optuna.storages import BaseStorage, GrpcStorageProxy, RDBStorage
from optuna.storages._cached_storage import _CachedStorage
from sqlalchemy.engine import Engine

from kdsearch.distill.errors import KDSearchError

from . import tables
from .storage import (
    GRACE_PERIOD_S,
    HEARTBEAT_INTERVAL_S,
    first_line,
    make_engine,
    make_storage,
    parse_grpc_url,
    prepare_schema,
)

__all__ = [
    "HEARTBEAT_ATTR",
    "HeartbeatRelay",
    "ProxyUnreachable",
    "TrialBeat",
    "connect_proxy",
    "reap_stale_trials",
    "serve_proxy",
]

log = logging.getLogger("kdsearch.proxy")

HEARTBEAT_ATTR = "kdsearch:heartbeat"


class ProxyUnreachable(KDSearchError):
    """No storage proxy answers at the worker's ``--storage`` address."""


PROXY_THREADS = 16


class HeartbeatRelay(_CachedStorage):
    """The proxy's storage: Optuna's cache over the database, where a trial system attribute
    :data:`HEARTBEAT_ATTR` is recorded as the trial's heartbeat (and not stored)."""

    def __init__(self, backend: RDBStorage) -> None:
        super().__init__(backend)
        self._rdb = backend

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        if key == HEARTBEAT_ATTR:
            self._rdb.record_heartbeat(trial_id)
            return
        super().set_trial_system_attr(trial_id, key, value)


def reap_stale_trials(storage: RDBStorage, engine: Engine) -> int:
    """Optuna's ``fail_stale_trials`` on every active study; returns the studies checked."""
    n = 0
    for run in tables.active(engine):
        try:
            study = optuna.load_study(study_name=run.study_name, storage=storage)
        except KeyError:
            continue
        optuna.storages.fail_stale_trials(study)
        n += 1
    return n


class _Reaper(threading.Thread):
    def __init__(self, storage: RDBStorage, engine: Engine, interval_s: float) -> None:
        super().__init__(name="kdsearch-reaper", daemon=True)
        self.storage, self.engine, self.interval_s = storage, engine, interval_s
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.interval_s):
            try:
                reap_stale_trials(self.storage, self.engine)
            except Exception as exc:  # an outage: try again next round
                log.warning("checking for stale trials failed: %s", first_line(exc))


def serve_proxy(
    database_url: str,
    host: str = "127.0.0.1",
    port: int = 13000,
    *,
    threads: int = PROXY_THREADS,
    heartbeat_interval: int = HEARTBEAT_INTERVAL_S,
    grace_period: int = GRACE_PERIOD_S,
    pool_size: int = 5,
    max_overflow: int = 5,
) -> None:
    """Serve the database's Optuna storage over gRPC until interrupted."""
    engine = make_engine(database_url, pool_size, max_overflow)
    prepare_schema(engine)
    backend = make_storage(
        database_url,
        engine,
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        pool_size=pool_size,
        max_overflow=max_overflow,
    )
    reaper = _Reaper(backend, engine, heartbeat_interval)
    reaper.start()
    log.info("storage proxy on %s:%d (%d threads)", host, port, threads)
    try:
        optuna.storages.run_grpc_proxy_server(
            HeartbeatRelay(backend),
            host=host,
            port=port,
            thread_pool=ThreadPoolExecutor(threads),
        )
    finally:
        reaper.stop.set()


def connect_proxy(url: str, wait_s: float) -> GrpcStorageProxy:
    """The Optuna storage of a ``grpc://HOST:PORT`` proxy, once it answers (``wait_s``)."""
    host, port = parse_grpc_url(url)
    proxy = GrpcStorageProxy(host=host, port=port)
    try:
        proxy.wait_server_ready(timeout=wait_s)
    except Exception as exc:
        raise ProxyUnreachable(
            f"no storage proxy answers at {url} after {wait_s:g} s ({first_line(exc)}): "
            "start it with `kdsearch storage-proxy`"
        ) from None
    return proxy


class TrialBeat:
    """While a trial runs on a proxied worker, send its heartbeat every ``interval_s``."""

    def __init__(self, storage: BaseStorage, interval_s: float, trial_id: int) -> None:
        self.storage, self.interval_s, self.trial_id = storage, interval_s, trial_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kdsearch-beat", daemon=True)

    def _beat(self) -> None:
        try:
            self.storage.set_trial_system_attr(self.trial_id, HEARTBEAT_ATTR, True)
        except Exception as exc:  # the proxy or the database is away: try again on schedule
            log.warning("heartbeat of trial id %d not sent: %s", self.trial_id, first_line(exc))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._beat()

    def __enter__(self) -> TrialBeat:
        self._beat()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 5)
