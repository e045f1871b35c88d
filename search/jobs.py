"""End-of-study jobs: claimed by workers like trial slots, and surviving their death.

When a study's search budget is spent, its final work (scoring the winners on the test
split, re-running them with fresh seeds) is planned as rows of ``kdsearch_jobs``. Any
worker takes a pending job with one conditional UPDATE (atomic on SQLite and PostgreSQL),
keeps its heartbeat fresh while it runs, and records a result or an error. A job whose
heartbeat went stale (its worker was killed) is taken again by the next worker, up to
:data:`MAX_ATTEMPTS` times. Jobs never touch the trial budget (``n_trials``).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .tables import jobs, now

KINDS = ("test", "confirm")
STATES = ("pending", "running", "done", "failed")
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class Job:
    id: int
    study_name: str
    kind: str
    trial_number: int
    seed: int
    state: str
    attempts: int
    result: dict[str, Any] | None
    error: str | None


def _job(r: Any) -> Job:
    return Job(
        r.id,
        r.study_name,
        r.kind,
        r.trial_number,
        r.seed,
        r.state,
        r.attempts,
        json.loads(r.result_json) if r.result_json else None,
        r.error,
    )


def plan(engine: Engine, study_name: str, wanted: list[tuple[str, int, int]]) -> int:
    """Add the (kind, trial_number, seed) jobs not planned yet; returns how many were added.

    Safe when several workers plan at once: the unique key keeps one row per job.
    """
    added = 0
    for kind, number, seed in wanted:
        assert kind in KINDS
        try:
            with engine.begin() as conn:
                conn.execute(
                    jobs.insert().values(
                        study_name=study_name,
                        kind=kind,
                        trial_number=number,
                        seed=seed,
                        state="pending",
                        attempts=0,
                    )
                )
            added += 1
        except sa.exc.IntegrityError:
            continue  # another worker planned it first
    return added


def list_jobs(engine: Engine, study_name: str) -> list[Job]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(jobs).where(jobs.c.study_name == study_name).order_by(jobs.c.id)
        ).all()
    return [_job(r) for r in rows]


def progress(engine: Engine, study_name: str) -> dict[str, int]:
    """Job counts by state (all four keys) plus ``total``."""
    counts = dict.fromkeys(STATES, 0)
    with engine.connect() as conn:
        for state, n in conn.execute(
            sa.select(jobs.c.state, sa.func.count())
            .where(jobs.c.study_name == study_name)
            .group_by(jobs.c.state)
        ).all():
            counts[state] = int(n)
    counts["total"] = sum(counts[s] for s in STATES)
    return counts


def claim(engine: Engine, study_name: str, worker: str, stale_after_s: float) -> Job | None:
    """Take one pending job, or one whose worker stopped beating; None when there is none.

    A stale job that already used :data:`MAX_ATTEMPTS` attempts is failed instead.
    """
    stale = now() - dt.timedelta(seconds=stale_after_s)
    runnable = sa.or_(
        jobs.c.state == "pending",
        sa.and_(jobs.c.state == "running", jobs.c.heartbeat_at < stale),
    )
    with engine.connect() as conn:
        candidates = conn.execute(
            sa.select(jobs.c.id, jobs.c.attempts)
            .where(jobs.c.study_name == study_name, runnable)
            .order_by(jobs.c.id)
        ).all()
    for job_id, attempts in candidates:
        with engine.begin() as conn:
            if attempts >= MAX_ATTEMPTS:
                conn.execute(
                    jobs.update()
                    .where(jobs.c.id == job_id, runnable)
                    .values(
                        state="failed",
                        finished_at=now(),
                        error=f"its worker stopped {attempts} times while running it",
                    )
                )
                continue
            res = conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.attempts == attempts, runnable)
                .values(state="running", worker=worker, heartbeat_at=now(), attempts=attempts + 1)
            )
            if res.rowcount != 1:
                continue  # another worker took it
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).one()
        return _job(row)
    return None


def beat(engine: Engine, job_id: int, worker: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            jobs.update()
            .where(jobs.c.id == job_id, jobs.c.worker == worker, jobs.c.state == "running")
            .values(heartbeat_at=now())
        )


def finish(
    engine: Engine,
    job_id: int,
    worker: str,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> bool:
    """Record the job's result (or its error); False when another worker has taken it over."""
    values: dict[str, Any] = {"finished_at": now()}
    if error is None:
        values.update(state="done", result_json=json.dumps(result or {}, allow_nan=False))
    else:
        values.update(state="failed", error=error[:4000])
    with engine.begin() as conn:
        res = conn.execute(
            jobs.update()
            .where(jobs.c.id == job_id, jobs.c.worker == worker, jobs.c.state == "running")
            .values(**values)
        )
        return bool(res.rowcount == 1)


def release(engine: Engine, job_id: int, worker: str) -> None:
    """Give a job back untried (its worker was stopped): pending again, attempt not counted."""
    with engine.begin() as conn:
        conn.execute(
            jobs.update()
            .where(jobs.c.id == job_id, jobs.c.worker == worker, jobs.c.state == "running")
            .values(state="pending", worker=None, attempts=jobs.c.attempts - 1)
        )


class Heartbeat:
    """Keeps a claimed job's heartbeat fresh from a thread while the job runs."""

    def __init__(self, engine: Engine, job_id: int, worker: str, interval_s: float) -> None:
        self._stop = threading.Event()
        self._args = (engine, job_id, worker)
        self._interval = interval_s
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                beat(*self._args)
            except Exception:  # the database is away: the job may go stale, and is retried
                continue

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
