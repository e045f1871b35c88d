"""Fault: the service (API + embedded worker) is stopped mid-study and started again.

The stop is the impatient one: SIGTERM to the service (the API stops, and the worker is
asked to finish its trial), then a second SIGTERM reaching the worker, as a second Ctrl-C
would through the service (abandon the trial at its next evaluation). The restart makes up
for the abandoned trial. Checked over HTTP, as a user would.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from kdsearch.search import tables
from kdsearch.search.storage import make_storage

from ..proc_helpers import free_port, serve_args, start_process, wait_for, wait_until_ok
from ..search_helpers import ready_engine
from ._support import (
    assert_no_crash,
    assert_nothing_lost,
    fault_spec,
    serve_env,
    snapshot,
    worker_children,
)

pytestmark = pytest.mark.faults


def _download(base: str, sid: str, trial: int) -> str:
    r = httpx.get(f"{base}/v1/studies/{sid}/checkpoint", params={"trial": trial}, timeout=60)
    assert r.status_code == 200, r.text
    digest = hashlib.sha256(r.content).hexdigest()
    assert digest == r.headers["X-Checksum-SHA256"]
    return digest


def test_service_restart_mid_trial_resumes_the_study(
    fault_teacher: str, pg_url: str, tmp_path: Path
) -> None:
    art, port = tmp_path / "art", free_port()
    base = f"http://127.0.0.1:{port}"
    args = serve_args(pg_url, art, port, "--workers", "1", "--open")
    env = serve_env(fault_teacher)
    server = start_process(*args, log=tmp_path / "serve1.log", env=env, name="serve (first)")
    restarted = None
    try:
        wait_until_ok(f"{base}/readyz", 300, "the service", procs=[server])
        # evaluations every 3 steps: an abandoned trial stops at the next one, not the end
        spec = fault_spec(fault_teacher, n_trials=2, training={"eval_every_steps": 3})
        created = httpx.post(f"{base}/v1/studies", json=spec.model_dump(mode="json"))
        assert created.status_code == 201, created.text
        sid = created.json()["id"]

        def study() -> dict:  # type: ignore[type-arg]
            r = httpx.get(f"{base}/v1/studies/{sid}", timeout=30)
            assert r.status_code == 200, r.text
            return r.json()  # type: ignore[no-any-return]

        def one_done_one_running() -> bool:
            counts = study()["trials"]
            return counts.get("COMPLETE", 0) >= 1 and counts.get("RUNNING", 0) == 1

        wait_for(
            one_done_one_running,
            400,
            "a COMPLETE trial and a RUNNING one",
            procs=[server],
        )
        engine = ready_engine(pg_url)
        storage = make_storage(pg_url, engine)
        before = snapshot(engine, storage, sid, art)
        digests = {n: _download(base, sid, n) for n in before}
        assert digests == {n: k.sha256 for n, k in before.items()}

        (worker,) = worker_children(server.pid)
        server.signal(signal.SIGTERM)  # the API stops, then it asks the worker to finish
        wait_for(
            lambda: "Finished server process" in server.output(),
            120,
            "the API to stop",
            procs=[server],
        )
        time.sleep(2)  # two SIGTERMs pending at once would count as one
        with contextlib.suppress(ProcessLookupError):  # (unless it has finished already)
            os.kill(worker, signal.SIGTERM)  # the worker's second: abandon the trial
        assert server.wait(300) == 0, server.tail()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base}/healthz")
        mid = tables.get(engine, sid)
        assert mid is not None and mid.status == "running"  # left for the next start

        restarted = start_process(
            *args, log=tmp_path / "serve2.log", env=env, name="serve (second)"
        )
        wait_for(
            lambda: study()["status"] == "completed",
            500,
            "the study to complete after the restart",
            procs=[restarted],
            ignore=(httpx.HTTPError,),
        )
        body = study()
        counts = {k: v for k, v in body["trials"].items() if v}
        assert counts.get("RUNNING", 0) == 0 and counts.get("WAITING", 0) == 0, counts
        assert counts["COMPLETE"] == 2, counts  # the budget, whatever the stop cost
        rows = httpx.get(f"{base}/v1/studies/{sid}/trials", params={"limit": 100}).json()
        for row in rows["items"]:
            if row["state"] == "FAIL":  # only the abandoned trial may fail, and says why
                assert row["error"] == "the worker was stopped during this trial", row
        assert counts.get("FAIL", 0) <= 1
        # the checkpoints from before the stop still download, byte for byte
        assert {n: _download(base, sid, n) for n in before} == digests
        best = httpx.get(f"{base}/v1/studies/{sid}/checkpoint", timeout=60)
        assert best.status_code == 200 and len(best.content) > 1_000_000
    finally:
        server.stop()
        if restarted is not None:
            restarted.stop()
    assert_nothing_lost(engine, storage, sid, art, before)
    assert_no_crash(server, restarted)
