"""Shared helpers for the fault tests: specs, faults to inject, and loss checks.

The processes themselves (``start_process``, ``wait_for``, ...) come from
``tests/proc_helpers.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from sqlalchemy.engine import Engine

from kdsearch.search import study as study_mod
from kdsearch.search import tables
from kdsearch.search.spec import StudySpec

from ..proc_helpers import Proc, wait_for
from ..search_helpers import PG_ADMIN, pg_available, tiny_spec

PG_VERSION = sorted(os.listdir("/etc/postgresql"))[0] if Path("/etc/postgresql").is_dir() else ""

# A worker that can write nothing its uid does not own: root without CAP_DAC_OVERRIDE
# (and CAP_FOWNER, so it cannot chmod its way back) obeys file modes like any user.
NO_DAC_OVERRIDE = (
    "setpriv",
    "--bounding-set=-dac_override,-fowner",
    "--inh-caps=-dac_override,-fowner",
    "--",
)


def fault_spec(teacher: str, **overrides: Any) -> StudySpec:
    """A tiny study on a local teacher folder that keeps every checkpoint, so a lost one
    is a real loss."""
    base: dict[str, Any] = {
        "teacher": {"model": teacher, "finetune": False},
        "n_trials": 3,
        "keep": {"policy": "top_k", "k": 50, "onnx": False},  # export: tested elsewhere
        "pruner": {"name": "none"},  # every trial runs to its end: the counts are exact
        "search_space": {"temperature": {"low": 1.0, "high": 4.0}, "lr": 1e-4, "epochs": 1},
    }
    base.update(overrides)
    return tiny_spec(**base)


def worker_children(pid: int) -> list[int]:
    """The multiprocessing worker processes a ``kdsearch serve`` process started."""
    out = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in children.read_text().split():
            try:
                cmd = Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "spawn_main" in cmd and "resource_tracker" not in cmd:
                out.append(int(child))
    return out


def serve_env(teacher: str, **settings: str) -> dict[str, str]:
    """``KDSEARCH_*`` settings for a service that accepts the teacher folder."""
    roots = json.dumps([str(Path(teacher).parent)])
    return {
        "KDSEARCH_MODEL_ROOTS": roots,
        **{f"KDSEARCH_{k.upper()}": v for k, v in settings.items()},
    }


def _pg_ctl(action: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, "main", action],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def restart_postgres(timeout: float = 60) -> float:
    """Restart the local cluster (all connections drop); returns the seconds it took.
    PostgreSQL is shared: whatever happens, it is running again afterwards."""
    started = time.monotonic()
    try:
        done = _pg_ctl("restart", timeout)
        assert done.returncode == 0, f"pg_ctlcluster restart: {done.stderr}"
        wait_for(pg_available, timeout, "PostgreSQL to accept connections again")
    finally:
        if not pg_available():
            _pg_ctl("start", timeout)
    return time.monotonic() - started


@contextmanager
def database_outage(url: str) -> Iterator[None]:
    """Cut one database off (every session dropped, new ones refused) and bring it back:
    a real outage for the processes using it, invisible to the rest of the cluster."""
    import psycopg

    db = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{db}" WITH ALLOW_CONNECTIONS false')
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (db,),
        )
    try:
        yield
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{db}" WITH ALLOW_CONNECTIONS true')


# ---------------------------------------------------------------- what must never be lost
def trials_of(storage: Any, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def states(trials: Sequence[optuna.trial.FrozenTrial]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in trials:
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Kept:
    """A COMPLETE trial's checkpoint as recorded before a fault."""

    trial_number: int
    artifact_id: str
    sha256: str
    values: tuple[float, ...]


def snapshot(engine: Engine, storage: Any, name: str, art: Path) -> dict[int, Kept]:
    """Every COMPLETE trial with its kept checkpoint, checked against the files now."""
    ckpts = {a["trial_number"]: a for a in tables.list_artifacts(engine, name, kind="checkpoint")}
    out: dict[int, Kept] = {}
    for t in trials_of(storage, name):
        if t.state != TrialState.COMPLETE:
            continue
        a = ckpts.get(t.number)
        assert a is not None, f"trial {t.number} is COMPLETE but has no kept checkpoint"
        assert sha256(art / a["artifact_id"]) == a["sha256"]
        out[t.number] = Kept(t.number, a["artifact_id"], a["sha256"], tuple(t.values or ()))
    return out


def assert_nothing_lost(
    engine: Engine, storage: Any, name: str, art: Path, before: dict[int, Kept]
) -> None:
    """The trials COMPLETE before the fault still are, with the same values, and their
    checkpoints are still listed, on disk and byte-identical; every artifact the registry
    lists (not deleted) exists with its recorded checksum."""
    assert before, "the fault test recorded no COMPLETE trial before the fault"
    trials = {t.number: t for t in trials_of(storage, name)}
    listed = tables.list_artifacts(engine, name)
    by_trial = {a["trial_number"]: a for a in listed if a["kind"] == "checkpoint"}
    for number, kept in before.items():
        t = trials[number]
        assert t.state == TrialState.COMPLETE and tuple(t.values or ()) == kept.values
        a = by_trial.get(number)
        assert a is not None, f"trial {number}'s checkpoint is no longer listed"
        assert a["artifact_id"] == kept.artifact_id and a["sha256"] == kept.sha256
        assert sha256(art / kept.artifact_id) == kept.sha256, f"trial {number}'s checkpoint"
    for a in listed:
        path = art / a["artifact_id"]
        assert path.is_file(), f"{a['name']} of trial {a['trial_number']} is missing"
        assert sha256(path) == a["sha256"], f"{a['name']} of trial {a['trial_number']}"


def assert_none_running(trials: Sequence[optuna.trial.FrozenTrial]) -> None:
    stuck = [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert not stuck, f"trials left RUNNING/WAITING: {stuck}"


def crashes(log: str) -> list[str]:
    """Tracebacks in a log, except in Optuna's report of a failed trial (it logs each one
    with its traceback, e.g. an abandoned trial's StopRequested)."""
    found, in_report = [], False
    for line in log.splitlines():
        if line.startswith(("[", "INFO:", "WARNING:", "ERROR:", "20")):  # a new log record
            in_report = "failed with parameters" in line
        if "Exception in thread" in line or (line.startswith("Traceback") and not in_report):
            found.append(line)
    return found


def assert_no_crash(*procs: Proc) -> None:
    for p in procs:
        assert not crashes(p.output()), p.tail(8000)


# ---------------------------------------------------------------- a worker through a fault
def running_after(storage: Any, name: str, done: int) -> bool:
    """At least ``done`` trials COMPLETE and exactly one RUNNING: a fault now lands mid-trial."""
    s = states(trials_of(storage, name))
    return s.get("COMPLETE", 0) >= done and s.get("RUNNING", 0) == 1


def finish_study(engine: Engine, name: str, worker: Proc, timeout: float, *others: Proc) -> None:
    """Wait for the study to complete, then stop the worker the way an operator does."""
    wait_for(
        lambda: (r := tables.get(engine, name)) is not None and r.status == "completed",
        timeout,
        "the study to complete after the fault",
        procs=[worker, *others],
    )
    worker.signal(signal.SIGTERM)
    assert worker.wait(120) == 0, worker.tail()


def assert_study_recovered(
    engine: Engine,
    storage: Any,
    name: str,
    art: Path,
    before: dict[int, Kept],
    worker: Proc,
    n_trials: int,
) -> list[optuna.trial.FrozenTrial]:
    """After the fault: no traceback, nothing left RUNNING, exactly the budget counted and
    COMPLETE, the claims matching it, and every earlier result intact. Returns the trials."""
    assert_no_crash(worker)  # the heartbeat thread lived through it, too
    trials = trials_of(storage, name)
    assert_none_running(trials)
    counted = [t for t in trials if study_mod.counted(t)]
    assert [t.state for t in counted] == [TrialState.COMPLETE] * n_trials, states(trials)
    run = tables.get(engine, name)
    assert run is not None and run.claimed == n_trials
    assert_nothing_lost(engine, storage, name, art, before)
    return trials
