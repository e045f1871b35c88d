"""Fault: ``kdsearch storage-proxy`` is killed mid-trial and started again on the same port.

A worker behind it (``--storage grpc://``) must treat the missing proxy as it treats a
database outage: no traceback, wait, reconnect, let the interrupted trial be failed and
retried (by the restarted proxy's reaper, from the stopped heartbeat), and finish the
budget with every earlier result intact.
"""

from __future__ import annotations

import signal
from pathlib import Path

import grpc
import pytest
from optuna.storages import GrpcStorageProxy
from optuna.trial import TrialState

from kdsearch.search.runner import create_study
from kdsearch.search.storage import database_unavailable, first_line, make_storage

from ..proc_helpers import free_port, start_process, wait_for, worker_args
from ..search_helpers import ready_engine
from ._support import (
    assert_study_recovered,
    fault_spec,
    finish_study,
    running_after,
    snapshot,
    states,
)

pytestmark = pytest.mark.faults
BEAT = ("--heartbeat-interval", "1", "--grace-period", "4")


def test_a_missing_proxy_reads_as_an_outage() -> None:
    gone = GrpcStorageProxy(host="127.0.0.1", port=free_port())  # nothing listens there
    with pytest.raises(grpc.RpcError) as err:
        gone.get_all_studies()
    assert database_unavailable(err.value)
    assert first_line(err.value).startswith("storage proxy: ")
    assert not database_unavailable(ValueError("a real error"))


def test_worker_rides_out_a_proxy_restart(fault_teacher: str, pg_url: str, tmp_path: Path) -> None:
    art, port = tmp_path / "art", free_port()
    # the study first: it migrates the fresh database before the proxy and worker open it
    name = create_study(fault_spec(fault_teacher, n_trials=3), pg_url)
    proxy_args = ("storage-proxy", "--database-url", pg_url, "--port", str(port), *BEAT)
    proxy = start_process(*proxy_args, log=tmp_path / "proxy1.log", name="proxy")
    storage_url = f"grpc://127.0.0.1:{port}"
    worker = start_process(
        *worker_args(pg_url, art, "--storage", storage_url, *BEAT), log=tmp_path / "worker.log"
    )
    engine = ready_engine(pg_url)
    storage = make_storage(pg_url, engine)
    try:
        wait_for(
            lambda: running_after(storage, name, 1),
            400,
            "a COMPLETE trial and a RUNNING one",
            procs=[worker],
        )
        before = snapshot(engine, storage, name, art)
        proxy.signal(signal.SIGKILL)
        proxy.wait(30)
        wait_for(
            lambda: "retrying in" in worker.output(),
            120,
            "the worker to notice the proxy is gone",
            procs=[worker],
        )
        assert "storage proxy: " in worker.output()
        proxy = start_process(*proxy_args, log=tmp_path / "proxy2.log", name="proxy")
        finish_study(engine, name, worker, 600, proxy)
    finally:
        worker.stop()
        proxy.stop()
    trials = assert_study_recovered(engine, storage, name, art, before, worker, n_trials=3)
    assert any(t.state == TrialState.FAIL for t in trials), states(trials)  # the cut-off one
