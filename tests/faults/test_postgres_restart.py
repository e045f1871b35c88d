"""Fault: the database goes away while a ``kdsearch worker`` runs a study: a real
PostgreSQL restart (every connection drops), and outages of the study's own database
(exact, and invisible to other users of the cluster), idle and mid-trial.

The worker must live through all of it without a traceback, fail and retry what an outage
cut off, and finish the budget with every earlier result intact.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kdsearch.search.runner import create_study
from kdsearch.search.storage import make_storage

from ..proc_helpers import start_process, wait_for, worker_args
from ..search_helpers import ready_engine
from ._support import (
    assert_study_recovered,
    database_outage,
    fault_spec,
    finish_study,
    restart_postgres,
    running_after,
    snapshot,
)

pytestmark = pytest.mark.faults


def test_worker_rides_out_database_outages(fault_teacher: str, pg_url: str, tmp_path: Path) -> None:
    art = tmp_path / "art"
    beat = ("--heartbeat-interval", "1", "--grace-period", "4")
    worker = start_process(*worker_args(pg_url, art, *beat), log=tmp_path / "worker.log")
    retries = lambda: worker.output().count("retrying in")  # noqa: E731
    try:
        # 1. idle: the worker polls for studies while its database is away
        wait_for(
            lambda: "ready: looking for studies" in worker.output(),
            300,
            "the worker",
            procs=[worker],
        )
        with database_outage(pg_url):
            wait_for(lambda: retries() >= 1, 60, "the worker to notice", procs=[worker])
        wait_for(
            lambda: "the database answers again" in worker.output(),
            120,
            "the worker to reconnect",
            procs=[worker],
        )
        engine = ready_engine(pg_url)
        storage = make_storage(pg_url, engine)
        name = create_study(fault_spec(fault_teacher, n_trials=3), pg_url)

        # 2. PostgreSQL restarts mid-trial: heartbeats and pooled connections meet it
        wait_for(
            lambda: running_after(storage, name, 1),
            400,
            "a COMPLETE trial and a RUNNING one",
            procs=[worker],
        )
        before = snapshot(engine, storage, name, art)
        restart_postgres()
        assert worker.alive(), worker.tail()

        # 3. a long outage over the end of a trial: its last writes fail, it goes stale
        wait_for(
            lambda: running_after(storage, name, 2),
            400,
            "two COMPLETE and a RUNNING",
            procs=[worker],
        )
        before = snapshot(engine, storage, name, art)
        noticed = retries()
        with database_outage(pg_url):
            wait_for(
                lambda: retries() > noticed, 300, "the trial to reach the database", procs=[worker]
            )
        finish_study(engine, name, worker, 400)
    finally:
        worker.stop()
    assert_study_recovered(engine, storage, name, art, before, worker, n_trials=3)
