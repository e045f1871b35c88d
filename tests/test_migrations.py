"""kdsearch's Alembic schema beside Optuna's, on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from alembic import command

from kdsearch import migrations
from kdsearch.search.storage import SchemaNotReady, make_engine, make_storage, prepare_schema

from .proc_helpers import run_cli
from .search_helpers import pg_available, pg_database

OURS = {
    "kdsearch_study_runs",
    "kdsearch_artifacts",
    "kdsearch_api_keys",
    "kdsearch_jobs",
    "kdsearch_alembic_version",
}


def _check_side_by_side(url: str) -> None:
    engine = make_engine(url)
    prepare_schema(engine)  # applies our migrations
    storage = make_storage(url, engine)  # creates Optuna's schema
    optuna.create_study(storage=storage, study_name="side-by-side")
    tables = set(sa.inspect(engine).get_table_names())
    assert tables >= OURS
    assert {"studies", "trials", "alembic_version", "version_info"} <= tables  # Optuna's
    assert migrations.current_revision(engine) == migrations.head_revision() == "0003"
    with engine.connect() as conn:
        optuna_rev = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        ours = conn.execute(sa.text("SELECT version_num FROM kdsearch_alembic_version")).scalar()
    assert ours == "0003" and optuna_rev is not None and optuna_rev != ours
    # the tables the code declares are exactly what the migrations built
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from kdsearch.migrations.env_support import include_object
    from kdsearch.search.tables import metadata

    with engine.connect() as conn:
        mc = MigrationContext.configure(
            conn, opts={"include_object": include_object, "compare_type": False}
        )
        diff = compare_metadata(mc, metadata)
    assert diff == [], diff
    # upgrading again is a no-op; downgrading ours leaves Optuna's untouched
    assert migrations.upgrade(engine) == "0003"
    cfg = migrations.alembic_config(engine)
    command.downgrade(cfg, "base")
    after = set(sa.inspect(engine).get_table_names())
    assert not (OURS - {"kdsearch_alembic_version"}) & after
    assert {"studies", "trials", "alembic_version"} <= after
    assert (
        optuna.load_study(study_name="side-by-side", storage=storage).study_name == "side-by-side"
    )
    migrations.upgrade(engine)
    assert migrations.is_up_to_date(engine)


def test_sqlite_schemas_side_by_side(tmp_path: Path) -> None:
    _check_side_by_side(f"sqlite:///{tmp_path / 'kd.db'}")


def _make(url: str) -> str | None:
    engine = make_engine(url)
    prepare_schema(engine)
    return migrations.current_revision(engine)


@pytest.mark.skipif(not pg_available(), reason="PostgreSQL on 127.0.0.1:5432 is down")
def test_postgres_schemas_side_by_side_and_concurrent_upgrades() -> None:
    with pg_database() as url:
        _check_side_by_side(url)
    # three processes race to create the schema
    with pg_database() as url, mp.get_context("spawn").Pool(3) as pool:
        assert pool.map(_make, [url] * 3) == ["0003"] * 3


def test_sqlite_concurrent_upgrades(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    with mp.get_context("spawn").Pool(3) as pool:
        assert pool.map(_make, [url] * 3) == ["0003"] * 3


def test_db_cli_upgrade_and_current(tmp_path: Path) -> None:
    import subprocess

    url = f"sqlite:///{tmp_path / 'cli.db'}"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli("db", *args, "--database-url", url, timeout=120)

    assert cli("current").stdout.strip() == "current none, latest 0003: needs `kdsearch db upgrade`"
    up = cli("upgrade")
    assert up.returncode == 0
    assert up.stdout.strip() == "kdsearch schema at revision 0003; Optuna's schema ready"
    tables = set(sa.inspect(make_engine(url)).get_table_names())
    assert {"studies", "trials", "kdsearch_study_runs"} <= tables
    assert cli("current").stdout.strip() == "current 0003, latest 0003: up to date"


def test_upgrade_from_0002_keeps_studies_and_adds_final_results(tmp_path: Path) -> None:
    from kdsearch.search import tables

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    assert migrations.upgrade(engine, "0002") == "0002"
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO kdsearch_study_runs (study_name, spec_json, n_trials, claimed, "
                "status, created_at, updated_at) VALUES ('old', '{}', 4, 4, 'completed', "
                "'2026-11-30 10:00:00', '2026-11-30 10:00:00')"
            )
        )
    assert migrations.upgrade(engine) == "0003"
    run = tables.get(engine, "old")
    assert run is not None and run.status == "completed" and run.n_trials == 4
    assert tables.results(engine, "old") is None
    tables.set_results(engine, "old", {"recommended": 2})
    assert tables.results(engine, "old") == {"recommended": 2}
    assert "kdsearch_jobs" in sa.inspect(engine).get_table_names()


def test_make_engine_never_migrates_and_readers_say_what_to_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    engine = make_engine(url)
    with engine.connect():
        pass
    assert migrations.current_revision(engine) is None
    assert not [t for t in sa.inspect(engine).get_table_names() if t.startswith("kdsearch_")]
    with pytest.raises(SchemaNotReady, match=r"has no kdsearch tables.*kdsearch db upgrade"):
        prepare_schema(engine, upgrade=False)
    # a reader on the command line: a clear error, no traceback, nothing created
    shown = run_cli("study", "show", "nope", "--database-url", url, timeout=120)
    assert shown.returncode == 2 and "Traceback" not in shown.stderr
    assert "has no kdsearch tables" in shown.stderr and "kdsearch db upgrade" in shown.stderr
    assert migrations.current_revision(engine) is None
    prepare_schema(engine)  # an owner (service, worker, study creation) upgrades
    assert migrations.is_up_to_date(engine)
    prepare_schema(engine, upgrade=False)  # and now readers are content
    with engine.begin() as conn:  # an older schema reads as such
        conn.execute(sa.text("UPDATE kdsearch_alembic_version SET version_num = '0002'"))
    with pytest.raises(SchemaNotReady, match="is at schema 0002, this kdsearch needs 0003"):
        prepare_schema(engine, upgrade=False)
