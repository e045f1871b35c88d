"""Workers behind ``kdsearch storage-proxy`` (Optuna's gRPC proxy) on a real PostgreSQL:
two worker processes complete a study through it, and a killed worker's trial is failed and
retried by the proxy's reaper from the heartbeats the workers send through the proxy."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from kdsearch.search import tables
from kdsearch.search.proxy import HEARTBEAT_ATTR
from kdsearch.search.runner import create_study
from kdsearch.search.storage import make_storage

from .proc_helpers import free_port, popen_cli, run_cli, wait_for, worker_args
from .search_helpers import pg_available, pg_database, ready_engine, tiny_spec

pytestmark = pytest.mark.skipif(not pg_available(), reason="PostgreSQL on 127.0.0.1:5432 is down")
BEAT = ("--heartbeat-interval", "1", "--grace-period", "4")


@contextmanager
def proxy(url: str) -> Iterator[str]:
    port = free_port()
    proc = popen_cli("storage-proxy", "--database-url", url, "--port", str(port), *BEAT)
    try:
        yield f"grpc://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def start_worker(url: str, storage: str, art: Path, *extra: str) -> subprocess.Popen[str]:
    return popen_cli(*worker_args(url, art, "--storage", storage, *BEAT, *extra))


def heartbeats(url: str) -> int:
    with ready_engine(url).connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM trial_heartbeats")).scalar() or 0)


def test_two_workers_complete_a_study_through_the_proxy(tiny_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pg_database() as url, proxy(url) as storage:
        name = create_study(tiny_spec(n_trials=4), url)
        workers = [
            start_worker(url, storage, tmp_path / "art", "--exit-when-idle") for _ in range(2)
        ]
        outputs = [w.communicate(timeout=900)[0] for w in workers]
        assert [w.returncode for w in workers] == [0, 0], outputs
        ran = [int(o.strip().splitlines()[-1].split()[2]) for o in outputs]
        assert sum(ran) == 4, outputs
        trials = optuna.load_study(study_name=name, storage=make_storage(url)).get_trials()
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
        # heartbeats went through the proxy into Optuna's table, not into the trials' attrs
        assert heartbeats(url) >= 4
        assert all(HEARTBEAT_ATTR not in t.system_attrs for t in trials)
        run = tables.get(ready_engine(url), name)
        assert run is not None and run.claimed == 4 and run.status == "completed"


def test_a_killed_proxied_workers_trial_is_failed_and_retried(tiny_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pg_database() as url, proxy(url) as storage:
        name = create_study(tiny_spec(n_trials=2, search_space={"epochs": 2, "lr": 1e-4}), url)
        study = optuna.load_study(study_name=name, storage=make_storage(url))
        victim = start_worker(url, storage, tmp_path / "art")

        def running() -> bool:
            return any(t.state == TrialState.RUNNING for t in study.get_trials())

        wait_for(running, 300, "the first worker to start a trial", interval=0.5)
        time.sleep(2)  # mid-trial
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        # the proxy's reaper fails it once its heartbeat is 4 s old, and retries it
        wait_for(
            lambda: any(t.state == TrialState.FAIL for t in study.get_trials()),
            60,
            "the proxy to fail the dead worker's trial",
            interval=0.5,
        )
        rescuer = start_worker(url, storage, tmp_path / "art", "--exit-when-idle")
        out = rescuer.communicate(timeout=900)[0]
        assert rescuer.returncode == 0, out
        states = [t.state for t in study.get_trials()]
        assert states.count(TrialState.FAIL) == 1
        assert states.count(TrialState.COMPLETE) == 2  # the budget was still met
        assert TrialState.RUNNING not in states and TrialState.WAITING not in states


def test_a_worker_without_a_proxy_fails_clearly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kd.db'}"
    port = free_port()
    out = run_cli(
        *worker_args(url, tmp_path / "art", "--storage", f"grpc://127.0.0.1:{port}"),
        "--wait-for-db",
        "1",
    )
    assert out.returncode == 2, out.stderr
    assert f"no storage proxy answers at grpc://127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr
    bad = run_cli(*worker_args(url, tmp_path / "art", "--storage", "grpc://nohost"))
    assert bad.returncode == 2 and "--storage must be grpc://HOST:PORT" in bad.stderr
