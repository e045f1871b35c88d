"""Fault: ``kill -9`` on the whole ``kdsearch serve`` process tree, twice, then restarts.

The first kill lands mid-trial, the second during the study's end (a confirmation re-run).
No process gets to clean up: the killed trial is left RUNNING and the killed job
``running`` until their heartbeats go stale. After the restarts the study finishes its exact
budget, with no duplicate trial numbers, no orphaned RUNNING trial, every end job done (the
killed one on its second try) and nothing lost. Checked over HTTP, as a user would.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import httpx
import pytest
from optuna.trial import TrialState

from kdsearch.search import jobs, tables
from kdsearch.search import study as study_mod
from kdsearch.search.storage import make_storage

from ..proc_helpers import Proc, free_port, serve_args, start_process, wait_for, wait_until_ok
from ..search_helpers import ready_engine
from ._support import (
    assert_no_crash,
    assert_none_running,
    assert_nothing_lost,
    fault_spec,
    serve_env,
    snapshot,
    trials_of,
)

pytestmark = pytest.mark.faults


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        for children in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in children.read_text().split()]
    return found


def kill_tree(server: Proc) -> None:
    tree = process_tree(server.pid)
    assert len(tree) >= 2, "the service has no worker process to kill"
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert server.wait(30) == -signal.SIGKILL
    wait_for(
        lambda: not any(Path(f"/proc/{p}").exists() for p in tree[1:]),
        30,
        "every process of the tree to be gone",
    )


def test_sigkill_of_the_serve_tree_mid_study_then_restart(
    fault_teacher: str, pg_url: str, tmp_path: Path
) -> None:
    art, port = tmp_path / "art", free_port()
    base = f"http://127.0.0.1:{port}"
    args = serve_args(pg_url, art, port, "--workers", "1", "--open")
    env = serve_env(fault_teacher)
    engine = ready_engine(pg_url)
    storage = make_storage(pg_url, engine)
    servers: list[Proc] = []

    def start(tag: str) -> Proc:
        proc = start_process(*args, log=tmp_path / f"serve-{tag}.log", env=env, name=tag)
        servers.append(proc)
        wait_until_ok(f"{base}/readyz", 300, "the service", procs=[proc])
        return proc

    def study() -> dict:  # type: ignore[type-arg]
        r = httpx.get(f"{base}/v1/studies/{sid}", timeout=30)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    try:
        first = start("first")
        spec = fault_spec(
            fault_teacher, n_trials=3, confirm={"seeds": 1}, training={"eval_every_steps": 3}
        )
        created = httpx.post(f"{base}/v1/studies", json=spec.model_dump(mode="json"))
        assert created.status_code == 201, created.text
        sid = created.json()["id"]

        def one_done_one_running() -> bool:
            counts = study()["trials"]
            return counts.get("COMPLETE", 0) >= 1 and counts.get("RUNNING", 0) == 1

        wait_for(one_done_one_running, 400, "a COMPLETE trial and a RUNNING one", procs=[first])
        before = snapshot(engine, storage, sid, art)
        kill_tree(first)
        orphans = [t for t in trials_of(storage, sid) if t.state == TrialState.RUNNING]
        assert len(orphans) == 1  # nobody failed it: only its stale heartbeat will tell

        second = start("second")

        def a_job_running() -> bool:
            return bool((study().get("end_jobs") or {}).get("running"))

        wait_for(a_job_running, 600, "an end-of-study job to run", procs=[second], interval=0.3)
        running = [j for j in jobs.list_jobs(engine, sid) if j.state == "running"]
        assert len(running) == 1
        kill_tree(second)

        third = start("third")
        wait_for(
            lambda: study()["status"] == "completed",
            600,
            "the study to complete after the restarts",
            procs=[third],
            ignore=(httpx.HTTPError,),
        )
        body = study()
    finally:
        for proc in servers:
            proc.stop()
    trials = trials_of(storage, sid)
    assert_none_running(trials)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3  # the exact budget
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [orphans[0].number]
    assert not study_mod.counted(failed[0])
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == failed[0].number)
    assert retry.state == TrialState.COMPLETE and retry.params == failed[0].params
    run = tables.get(engine, sid)
    assert run is not None and run.status == "completed" and run.claimed == 3
    # the end: every job done, the killed one on its second try; results stored and shown
    done = jobs.list_jobs(engine, sid)
    assert {j.state for j in done} == {"done"}
    again = next(j for j in done if j.id == running[0].id)
    assert again.attempts == 2
    assert body["end_jobs"]["done"] == body["end_jobs"]["total"] == len(done)
    assert body["recommended"]["test_metrics"]["accuracy"] is not None
    assert body["recommended"]["confirmed"]["seeds"] == [spec.seed + 1]
    assert_nothing_lost(engine, storage, sid, art, before)
    assert_no_crash(*servers[2:])
