"""Fault: ``kill -9`` on one of two workers in the middle of a trial (PostgreSQL)."""

from __future__ import annotations

import signal
from datetime import datetime
from pathlib import Path

import pytest
from optuna.trial import TrialState

from kdsearch.search import study as study_mod
from kdsearch.search import tables
from kdsearch.search.runner import create_study
from kdsearch.search.storage import make_storage

from ..proc_helpers import start_process, wait_for, worker_args
from ..search_helpers import ready_engine
from ._support import (
    assert_no_crash,
    assert_none_running,
    assert_nothing_lost,
    fault_spec,
    snapshot,
    states,
    trials_of,
)

pytestmark = pytest.mark.faults


def test_killed_worker_costs_a_retry_not_the_budget(
    fault_teacher: str, pg_url: str, tmp_path: Path
) -> None:
    engine = ready_engine(pg_url)
    storage = make_storage(pg_url, engine)
    name = create_study(fault_spec(fault_teacher, n_trials=4), pg_url)
    art = tmp_path / "art"
    beat = ("--heartbeat-interval", "1", "--grace-period", "4")
    victim, survivor = (
        start_process(
            *worker_args(pg_url, art, "--exit-when-idle", "--worker-index", str(i), *beat),
            log=tmp_path / f"worker{i}.log",
            name=f"worker {i}",
        )
        for i in range(2)
    )
    try:

        def both_early_in_a_trial() -> bool:
            """Both workers are in the first half of a trial (judged by the finished ones),
            so whichever trial is the victim's, it dies in the middle of it."""
            trials = trials_of(storage, name)
            took = [t.duration.total_seconds() for t in trials if t.duration is not None]
            ages = [
                (datetime.now() - t.datetime_start).total_seconds()
                for t in trials
                if t.state == TrialState.RUNNING and t.datetime_start is not None
            ]
            return bool(took) and len(ages) == 2 and max(ages) < 0.5 * min(took)

        while True:
            wait_for(both_early_in_a_trial, 400, "both workers early in a trial", procs=[victim])
            before = snapshot(engine, storage, name, art)
            if both_early_in_a_trial():  # still (the snapshot took a moment)
                break
        victim.signal(signal.SIGKILL)
        assert victim.wait(30) == -signal.SIGKILL
        assert survivor.wait(400) == 0, survivor.tail()
    finally:
        victim.stop()
        survivor.stop()
    assert survivor.output().strip().splitlines()[-1].startswith("worker done:")
    assert_no_crash(survivor)
    trials = trials_of(storage, name)
    assert_none_running(trials)
    assert states(trials) == {"COMPLETE": 4, "FAIL": 1}, states(trials)
    failed = next(t for t in trials if t.state == TrialState.FAIL)
    assert not study_mod.counted(failed)  # a dead worker's trial does not use budget
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == failed.number)
    assert retry.state == TrialState.COMPLETE and retry.params == failed.params
    run = tables.get(engine, name)
    assert run is not None and run.status == "completed" and run.claimed == 4
    assert_nothing_lost(engine, storage, name, art, before)
    # every COMPLETE trial kept a checkpoint (the keep policy here keeps them all)
    kept = {a["trial_number"] for a in tables.list_artifacts(engine, name, kind="checkpoint")}
    assert {t.number for t in trials if t.state == TrialState.COMPLETE} <= kept
