"""The fixes behind the PostgreSQL restart fault, one at a time, on exact outages (one
database cut off, so other users of the cluster see nothing): ``database_unavailable``
tells an outage from a real error, the heartbeat outlives one (``OutageTolerantStorage``),
and a trial an outage cut off gives its budget slot back. The whole worker riding out a
real restart is in ``test_postgres_restart.py``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from optuna.exceptions import StorageInternalError
from optuna.trial import TrialState

from kdsearch.search import study as study_mod
from kdsearch.search import tables
from kdsearch.search.objective import TrialObjective
from kdsearch.search.runner import create_study
from kdsearch.search.storage import database_unavailable, first_line, make_storage
from kdsearch.search.worker import Worker, WorkerOptions

from ..search_helpers import pg_database, ready_engine
from ._support import (
    database_outage,
    fault_spec,
)

pytestmark = pytest.mark.faults


def test_outage_errors_are_told_apart_from_real_ones(pg_url: str) -> None:
    refused = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none")
    with pytest.raises(sa.exc.OperationalError) as err:
        refused.connect()
    assert database_unavailable(err.value)
    engine = ready_engine(pg_url)
    storage = make_storage(pg_url, engine)
    with database_outage(pg_url):
        with pytest.raises(sa.exc.OperationalError) as err:
            tables.active(engine)
        assert database_unavailable(err.value)
        with pytest.raises(StorageInternalError) as wrapped:  # Optuna wraps it
            storage.get_all_studies()
        assert database_unavailable(wrapped.value)
        assert "is not currently accepting connections" in first_line(wrapped.value)
    with pytest.raises(sa.exc.ProgrammingError) as bad, engine.connect() as conn:
        conn.execute(sa.text("SELECT * FROM no_such_table"))
    assert not database_unavailable(bad.value)  # a real error stays fatal


def _beat(engine: sa.Engine, trial_id: int) -> object:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT heartbeat FROM trial_heartbeats WHERE trial_id = :t"), {"t": trial_id}
        ).scalar_one()


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_heartbeat_outlives_an_outage(pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    engine = ready_engine(pg_url)
    storage = make_storage(pg_url, engine, heartbeat_interval=1, grace_period=5)
    trial = optuna.create_study(storage=storage).ask()
    storage.record_heartbeat(trial._trial_id)
    first = _beat(engine, trial._trial_id)
    with caplog.at_level(logging.WARNING, "kdsearch.storage"), database_outage(pg_url):
        # Optuna's own storage raises here, which ends its heartbeat thread for good
        storage.record_heartbeat(trial._trial_id)
    assert "not recorded, the database is unreachable" in caplog.text
    time.sleep(0.05)
    storage.record_heartbeat(trial._trial_id)  # the next beat lands
    assert _beat(engine, trial._trial_id) > first  # type: ignore[operator]


def test_outage_mid_trial_gives_the_slot_back(
    fault_teacher: str, pg_url: str, tmp_path: Path
) -> None:
    """The registry's database fails during the trial's last writes while Optuna's still
    answers: the trial fails as abandoned, does not count, and its slot is given back."""
    engine = ready_engine(pg_url)
    name = create_study(fault_spec(fault_teacher, n_trials=1, search_space={"epochs": 0.2}), pg_url)
    worker = Worker(WorkerOptions(pg_url, str(tmp_path / "art")))
    spec, study = worker._load(tables.get(engine, name))  # type: ignore[arg-type]
    assert tables.claim(engine, name)
    with pg_database() as other:
        ctx = worker._context(spec)
        objective = TrialObjective(spec, ctx, ready_engine(other), worker.store)
        with database_outage(other):
            worker._one_trial(study, objective, name, spec)
    (trial,) = study.get_trials()
    assert trial.state == TrialState.FAIL and trial.user_attrs["abandoned"] is True
    assert trial.user_attrs["error"].startswith("the database was unreachable: ")
    assert "is not currently accepting connections" in trial.user_attrs["error"]
    assert not study_mod.counted(trial)
    run = tables.get(engine, name)
    assert run is not None and run.claimed == 0  # the budget still buys one real trial
