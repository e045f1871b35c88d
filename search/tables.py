"""kdsearch's own bookkeeping beside Optuna's tables, in the same database.

- ``kdsearch_study_runs``: one row per study: the spec, the shared trial budget (``claimed``
  counts trial slots taken by workers, never more than ``n_trials``), status and error.
- ``kdsearch_artifacts``: plots and checkpoints uploaded through ``optuna.artifacts``, and
  whether the keep policy has deleted them.
- ``kdsearch_jobs``: the work a study does after its search (test scoring, confirmation
  re-runs), claimed by workers like trial slots (``search.jobs``).

Optuna owns ``studies``, ``trials``, ``alembic_version`` ...; our tables carry a prefix.
The schema is owned by Alembic (``migrations/``, version table
``kdsearch_alembic_version``); the tables below mirror the latest migration.
Claiming a slot is one conditional UPDATE, atomic on SQLite and PostgreSQL alike, so any
number of workers share the budget without running a trial too many.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

metadata = sa.MetaData()

STATUSES = ("queued", "running", "completed", "failed", "cancelled")
ACTIVE = ("queued", "running")

study_runs = sa.Table(
    "kdsearch_study_runs",
    metadata,
    sa.Column("study_name", sa.String(255), primary_key=True),
    sa.Column("spec_json", sa.Text, nullable=False),
    sa.Column("n_trials", sa.Integer, nullable=False),
    sa.Column("claimed", sa.Integer, nullable=False, default=0),
    sa.Column("status", sa.String(16), nullable=False, default="queued"),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("owner", sa.String(255), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True),
    # the study's final results (test scores, confirmed means), set when it completes
    sa.Column("results_json", sa.Text, nullable=True),
)

# End-of-study work (see search.jobs): test scoring and confirmation re-runs.
jobs = sa.Table(
    "kdsearch_jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_name", sa.String(255), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),  # test | confirm
    sa.Column("trial_number", sa.Integer, nullable=False),
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # pending | running | done | failed
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("worker", sa.String(255), nullable=True),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("result_json", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.UniqueConstraint("study_name", "kind", "trial_number", "seed", name="uq_kdsearch_job"),
)

artifacts = sa.Table(
    "kdsearch_artifacts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_name", sa.String(255), nullable=False, index=True),
    sa.Column("trial_number", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),  # checkpoint | plot
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("artifact_id", sa.String(64), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=True),
    sa.Column("size_bytes", sa.BigInteger, nullable=True),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.UniqueConstraint("study_name", "trial_number", "name", name="uq_kdsearch_artifact"),
)


# Owned by the service (auth); declared here so one MetaData mirrors the whole schema.
api_keys = sa.Table(
    "kdsearch_api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("prefix", sa.String(16), nullable=False, unique=True),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("owner", sa.String(255), nullable=False),
    sa.Column("is_admin", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class StudyRun:
    study_name: str
    spec: dict[str, Any]
    n_trials: int
    claimed: int
    status: str
    error: str | None
    owner: str | None
    created_at: dt.datetime
    deadline_at: dt.datetime | None
    # the final results (test scores, confirmed means) once the study has completed
    results: dict[str, Any] | None = None


def _row(r: Any) -> StudyRun:
    return StudyRun(
        r.study_name,
        json.loads(r.spec_json),
        r.n_trials,
        r.claimed,
        r.status,
        r.error,
        r.owner,
        r.created_at,
        r.deadline_at,
        json.loads(r.results_json) if r.results_json else None,
    )


class QuotaExceeded(Exception):
    """The owner already has ``active`` queued or running studies, the most allowed."""

    def __init__(self, owner: str | None, active: int, limit: int) -> None:
        super().__init__(f"{owner!r} has {active} queued or running studies (limit {limit})")
        self.owner, self.active, self.limit = owner, active, limit


def _owner_lock(conn: sa.Connection, owner: str | None) -> None:
    """Serialise quota checks per owner for the rest of this transaction.

    PostgreSQL: a transaction-scoped advisory lock keyed by the owner. SQLite: the INSERT
    that follows takes the database's write lock before the count, which is enough.
    """
    if conn.dialect.name == "postgresql":
        digest = hashlib.sha256(f"kdsearch-quota:{owner}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def register(
    engine: Engine,
    study_name: str,
    spec: dict[str, Any],
    n_trials: int,
    timeout_s: float | None = None,
    owner: str | None = None,
    max_active: int | None = None,
) -> None:
    """Record a queued study. With ``max_active``, the owner's queued + running studies
    (this one included) may not exceed it: checked and inserted in one transaction, so
    simultaneous requests cannot overshoot; raises :class:`QuotaExceeded`."""
    t = now()
    deadline = t + dt.timedelta(seconds=timeout_s) if timeout_s else None
    with engine.begin() as conn:
        if max_active is not None:
            _owner_lock(conn, owner)
        conn.execute(
            study_runs.insert().values(
                study_name=study_name,
                spec_json=json.dumps(spec),
                n_trials=n_trials,
                claimed=0,
                status="queued",
                error=None,
                owner=owner,
                created_at=t,
                updated_at=t,
                deadline_at=deadline,
            )
        )
        if max_active is not None:
            mine = conn.execute(
                sa.select(sa.func.count())
                .select_from(study_runs)
                .where(study_runs.c.owner == owner, study_runs.c.status.in_(ACTIVE))
            ).scalar_one()
            if mine > max_active:
                raise QuotaExceeded(owner, mine - 1, max_active)  # rolls the INSERT back


@contextlib.contextmanager
def connected(bind: Engine | sa.Connection) -> Iterator[sa.Connection]:
    """``bind`` itself when it is a connection (a request reusing one), else a new one."""
    if isinstance(bind, sa.Connection):
        yield bind
    else:
        with bind.connect() as conn:
            yield conn


def get(bind: Engine | sa.Connection, study_name: str) -> StudyRun | None:
    with connected(bind) as conn:
        r = conn.execute(sa.select(study_runs).where(study_runs.c.study_name == study_name)).first()
    return _row(r) if r is not None else None


def active(engine: Engine) -> list[StudyRun]:
    """Studies a worker may take trials from, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(study_runs)
            .where(study_runs.c.status.in_(ACTIVE))
            .order_by(study_runs.c.created_at)
        ).all()
    return [_row(r) for r in rows]


def claim(engine: Engine, study_name: str) -> bool:
    """Take one trial slot if the budget has one left (atomic)."""
    with engine.begin() as conn:
        res = conn.execute(
            study_runs.update()
            .where(
                study_runs.c.study_name == study_name,
                study_runs.c.claimed < study_runs.c.n_trials,
                study_runs.c.status.in_(ACTIVE),
            )
            .values(claimed=study_runs.c.claimed + 1, status="running", updated_at=now())
        )
        return bool(res.rowcount == 1)


def release(engine: Engine, study_name: str) -> None:
    """Give a slot back (a trial that did not count: its worker died or was stopped)."""
    with engine.begin() as conn:
        conn.execute(
            study_runs.update()
            .where(study_runs.c.study_name == study_name, study_runs.c.claimed > 0)
            .values(claimed=study_runs.c.claimed - 1, updated_at=now())
        )


def set_status(
    engine: Engine,
    study_name: str,
    status: str,
    error: str | None = None,
    *,
    only_active: bool = True,
) -> bool:
    """Move a study to ``status``; by default only from queued/running (first writer wins)."""
    assert status in STATUSES
    cond = [study_runs.c.study_name == study_name]
    if only_active:
        cond.append(study_runs.c.status.in_(ACTIVE))
    values: dict[str, Any] = {"status": status, "updated_at": now()}
    if error is not None:
        values["error"] = error[:4000]
    with engine.begin() as conn:
        res = conn.execute(study_runs.update().where(*cond).values(**values))
        return bool(res.rowcount == 1)


def record_artifact(
    engine: Engine,
    study_name: str,
    trial_number: int,
    kind: str,
    name: str,
    artifact_id: str,
    sha256: str | None,
    size_bytes: int | None,
) -> None:
    with engine.begin() as conn:
        conn.execute(
            artifacts.insert().values(
                study_name=study_name,
                trial_number=trial_number,
                kind=kind,
                name=name,
                artifact_id=artifact_id,
                sha256=sha256,
                size_bytes=size_bytes,
                deleted=False,
            )
        )


def list_artifacts(
    engine: Engine, study_name: str, *, kind: str | None = None, include_deleted: bool = False
) -> list[dict[str, Any]]:
    q = sa.select(artifacts).where(artifacts.c.study_name == study_name)
    if kind is not None:
        q = q.where(artifacts.c.kind == kind)
    if not include_deleted:
        q = q.where(artifacts.c.deleted.is_(False))
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q.order_by(artifacts.c.id)).all()]


def set_results(engine: Engine, study_name: str, results: dict[str, Any]) -> None:
    """Store the study's final results (JSON; NaN is refused)."""
    with engine.begin() as conn:
        conn.execute(
            study_runs.update()
            .where(study_runs.c.study_name == study_name)
            .values(results_json=json.dumps(results, allow_nan=False), updated_at=now())
        )


def results(engine: Engine, study_name: str) -> dict[str, Any] | None:
    """The final results stored by :func:`set_results`, or None before the study ends."""
    with engine.connect() as conn:
        raw = conn.execute(
            sa.select(study_runs.c.results_json).where(study_runs.c.study_name == study_name)
        ).scalar()
    return json.loads(raw) if raw else None


def mark_deleted(engine: Engine, ids: list[int]) -> None:
    if ids:
        with engine.begin() as conn:
            conn.execute(artifacts.update().where(artifacts.c.id.in_(ids)).values(deleted=True))
