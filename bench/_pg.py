"""Shared by the PostgreSQL benchmarks (api_load, worker_scaling): a throwaway database, the
``kdsearch`` command, an admin key, a running server and a connection-count sampler."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

PG_ADMIN = os.environ.get("KDSEARCH_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def kdsearch_cmd() -> list[str]:
    """The installed ``kdsearch`` script beside this Python, else
    ``python -m kdsearch.service.cli``."""
    script = Path(sys.executable).parent / "kdsearch"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "kdsearch.service.cli"]


@contextlib.contextmanager
def throwaway_database(admin_url: str) -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL database (dropped afterwards): (SQLAlchemy URL, server version)."""
    import psycopg

    name = f"kd_bench_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.OperationalError as exc:
        raise SystemExit(f"needs PostgreSQL ({admin_url}): {exc}") from None
    host = admin_url.split("://", 1)[1].rsplit("/", 1)[0]
    try:
        yield f"postgresql+psycopg://{host}/{name}", str(row[0] if row else "?").split()[0]
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postmaster_started(admin_url: str) -> str:
    """When the PostgreSQL server last (re)started: compare before/after a measurement."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=30) as conn:
        row = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
    return str(row[0]) if row else "?"


def create_admin_key(url: str) -> str:
    cmd = [*kdsearch_cmd(), "keys", "create", "--admin", "--owner", "bench"]
    out = subprocess.run([*cmd, "--database-url", url], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


@contextlib.contextmanager
def running_server(url: str, env: dict[str, str], log_path: Path) -> Iterator[str]:
    """``kdsearch serve --workers 0`` on a free loopback port; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    with tempfile.TemporaryDirectory(prefix="kd-bench-serve-") as tmp, log_path.open("w") as log:
        cmd = [*kdsearch_cmd(), "serve", "--workers", "0", "--host", "127.0.0.1"]
        cmd += ["--port", str(port), "--database-url", url, "--artifact-dir", f"{tmp}/art"]
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"server did not start:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.3)
            yield base
        finally:
            stop_process(proc, signal.SIGTERM)


def stop_process(proc: subprocess.Popen[Any], sig: int, grace_s: float = 30) -> None:
    """Send ``sig``, wait up to ``grace_s``, then kill."""
    proc.send_signal(sig)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class ConnectionSampler:
    """Counts the database's connections (``pg_stat_activity``) every ``every`` seconds from
    a thread, over its own connection to the admin database (so it never counts itself)."""

    def __init__(self, admin_url: str, database: str, every: float = 0.5) -> None:
        self.admin_url, self.database, self.every = admin_url, database, every
        self.samples: list[int] = []
        self.dropped: list[str] = []  # sampling connections lost (time, error)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psycopg

        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
        while not self._stop.is_set():
            try:  # reconnect when the server drops us (a restart, pg_terminate_backend)
                with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as c:
                    while not self._stop.is_set():
                        row = c.execute(query, (self.database,)).fetchone()
                        self.samples.append(int(row[0]) if row else 0)
                        self._stop.wait(self.every)
            except psycopg.Error as exc:
                self.dropped.append(f"{time.strftime('%H:%M:%S')} {type(exc).__name__}")
                self._stop.wait(self.every)

    def start(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def summary(self) -> dict[str, Any]:
        xs = self.samples or [0]
        return {
            "peak": max(xs),
            "mean": statistics.fmean(xs),
            "samples": len(self.samples),
            "dropped": list(self.dropped),
        }
