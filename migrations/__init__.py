"""Alembic migrations for kdsearch's own tables (``kdsearch_*``), applied programmatically.

Optuna owns ``alembic_version`` in the same database, so ours is
``kdsearch_alembic_version``; autogenerate only ever looks at ``kdsearch_*`` tables.
Upgrades take a lock (PostgreSQL advisory lock; SQLite's write lock) so that several
workers starting at once upgrade exactly once.
"""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

VERSION_TABLE = "kdsearch_alembic_version"
TABLE_PREFIX = "kdsearch_"
_LOCK_KEY = 0x6B647365  # "kdse"


def alembic_config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).resolve().parent))
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return ctx.get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring kdsearch's tables to ``revision``; safe to call from many processes at once."""
    if revision == "head" and current_revision(engine) == head_revision():
        return head_revision()
    cfg = alembic_config(engine)
    for attempt in range(20):
        try:
            with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
            break
        except sa.exc.DBAPIError:
            # SQLite has no advisory lock: a concurrent upgrader makes ours fail fast with
            # "database is locked" (lock upgrade refused) or "table exists". Wait, re-check.
            if revision == "head" and is_up_to_date(engine):
                break
            if attempt == 19:
                raise
            time.sleep(0.25 * (attempt + 1))
    return current_revision(engine)


def is_up_to_date(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()
