"""A worker started before its database waits for it; the CLI says "unreachable", no traceback."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from kdsearch.search import tables
from kdsearch.search.storage import make_engine, schema_ready, wait_for_database
from kdsearch.search.worker import Worker, WorkerOptions

from .proc_helpers import run_cli
from .search_helpers import PG_ADMIN, pg_available

# Nothing listens on port 1: connection refused, the way a database that is not up yet looks.
NOBODY = "postgresql+psycopg://postgres@127.0.0.1:1/kdsearch"

needs_pg = pytest.mark.skipif(not pg_available(), reason="PostgreSQL is not reachable")


def test_wait_gives_up_after_the_deadline_with_the_outage_error() -> None:
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        time.sleep(seconds)

    started = time.monotonic()
    with pytest.raises(sa.exc.OperationalError, match="refused"):
        wait_for_database(lambda: schema_ready(make_engine(NOBODY)), 2.5, sleep=sleep)
    elapsed = time.monotonic() - started
    assert 2.5 <= elapsed < 10
    # 1 s, then what is left of the 2.5 s (the next pause would have been 2 s)
    assert len(pauses) == 2 and pauses[0] == 1.0 and 1.0 < pauses[1] <= 1.5


def test_wait_does_not_retry_an_error_that_is_not_an_outage() -> None:
    calls = []

    def broken() -> None:
        calls.append(1)
        raise ValueError("bad schema")

    with pytest.raises(ValueError, match="bad schema"):
        wait_for_database(broken, 60.0)
    assert calls == [1]


@needs_pg
def test_worker_started_before_its_database_waits_for_it(tmp_path: Path) -> None:
    name = f"kd_late_{uuid.uuid4().hex[:10]}"
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"

    def create_later() -> None:
        time.sleep(3)  # until then: 'database "kd_late_..." does not exist'
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    late = threading.Thread(target=create_later)
    late.start()
    try:
        started = time.monotonic()
        worker = Worker(WorkerOptions(url, str(tmp_path / "art"), startup_wait_s=60))
        waited = time.monotonic() - started
        late.join()
        assert waited >= 3.0
        assert tables.active(worker.engine) == []  # migrated and usable
        assert worker.storage.get_all_studies() == []
        worker.engine.dispose()
        worker.storage.engine.dispose()
    finally:
        late.join()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_cli_names_the_unreachable_database_without_a_traceback(tmp_path: Path) -> None:
    shown = run_cli("study", "show", "kd-nothing", "--database-url", NOBODY)
    assert shown.returncode == 2, shown.stderr
    assert "the database is unreachable" in shown.stderr
    assert "Traceback" not in shown.stderr

    worker = run_cli(
        "worker",
        "--database-url",
        NOBODY,
        "--artifact-dir",
        str(tmp_path / "art"),
        "--wait-for-db",
        "1",
    )
    assert worker.returncode == 2, worker.stderr
    assert "the database is unreachable" in worker.stderr
    assert "retrying in" in worker.stderr  # it did wait before giving up
    assert "Traceback" not in worker.stderr
