"""Workers in separate processes sharing one real PostgreSQL study."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from kdsearch.search import tables
from kdsearch.search.runner import create_study
from kdsearch.search.storage import make_storage

from .proc_helpers import popen_cli, wait_for, worker_args
from .search_helpers import pg_available, pg_database, ready_engine, tiny_spec

pytestmark = pytest.mark.skipif(not pg_available(), reason="PostgreSQL on 127.0.0.1:5432 is down")
OPTUNA_CLI = Path(sys.executable).parent / "optuna"


def start_worker(url: str, art: Path, *extra: str) -> subprocess.Popen[str]:
    return popen_cli(*worker_args(url, art, *extra))


def optuna_cli(*args: str) -> str:
    """The optuna CLI's stdout; it must succeed."""
    env = {**os.environ, "OPTUNA_VERBOSITY": "WARNING"}
    return subprocess.run(
        [str(OPTUNA_CLI), *args], capture_output=True, text=True, check=True, env=env
    ).stdout


def test_two_workers_share_the_budget_exactly(tiny_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pg_database() as url:
        name = create_study(tiny_spec(n_trials=4), url)
        workers = [start_worker(url, tmp_path / "art", "--exit-when-idle") for _ in range(2)]
        outputs = [w.communicate(timeout=900)[0] for w in workers]
        assert [w.returncode for w in workers] == [0, 0], outputs
        ran = [
            int(o.strip().splitlines()[-1].split()[2]) for o in outputs
        ]  # "worker done: N trials"
        assert sum(ran) == 4
        study = optuna.load_study(study_name=name, storage=make_storage(url))
        trials = study.get_trials()
        assert len(trials) == 4
        assert all(t.state == TrialState.COMPLETE for t in trials)
        assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 4  # no twin work
        run = tables.get(ready_engine(url), name)
        assert run is not None and run.claimed == 4 and run.status == "completed"

        # real clients: the optuna CLI reads the same study
        out = optuna_cli("trials", "--study-name", name, "--storage", url, "-f", "json")
        listed = json.loads(out)
        assert sorted(r["number"] for r in listed) == [0, 1, 2, 3]
        assert {r["state"] for r in listed} == {"COMPLETE"}
        best = optuna_cli("best-trials", "--study-name", name, "--storage", url, "-f", "json")
        assert {r["number"] for r in json.loads(best)} == {t.number for t in study.best_trials}


def test_killed_worker_trial_is_failed_and_retried(tiny_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    beat = ("--heartbeat-interval", "1", "--grace-period", "4")
    with pg_database() as url:
        name = create_study(tiny_spec(n_trials=2, search_space={"epochs": 2, "lr": 1e-4}), url)
        storage = make_storage(url)
        study = optuna.load_study(study_name=name, storage=storage)
        victim = start_worker(url, tmp_path / "art", *beat)

        def running() -> bool:
            return any(t.state == TrialState.RUNNING for t in study.get_trials())

        wait_for(running, 300, "the first worker to start a trial", interval=0.5)
        time.sleep(2)  # mid-trial
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        rescuer = start_worker(url, tmp_path / "art", *beat, "--exit-when-idle")
        out = rescuer.communicate(timeout=900)[0]
        assert rescuer.returncode == 0, out
        trials = study.get_trials()
        states = [t.state for t in trials]
        assert TrialState.RUNNING not in states and TrialState.WAITING not in states
        assert states.count(TrialState.FAIL) == 1
        assert states.count(TrialState.COMPLETE) == 2  # the budget was still met
        failed = next(t for t in trials if t.state == TrialState.FAIL)
        retry = next(t for t in trials if t.system_attrs.get("failed_trial") == failed.number)
        assert retry.state == TrialState.COMPLETE
        run = tables.get(ready_engine(url), name)
        assert run is not None and run.status == "completed" and run.claimed == 2
