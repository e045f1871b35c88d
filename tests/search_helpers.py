"""Helpers for the search tests: tiny specs and throwaway PostgreSQL databases."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.engine import Engine

from kdsearch.search.spec import StudySpec
from kdsearch.search.storage import make_engine, prepare_schema

from .conftest import TINY

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def tiny_spec(**overrides: Any) -> StudySpec:
    base: dict[str, Any] = {
        "data": copy.deepcopy(TINY["data"]),
        "teacher": copy.deepcopy(TINY["teacher"]),
        "student": {"kind": "truncate", "num_layers": 2},
        "metrics": copy.deepcopy(TINY["metrics"]),
        "search_space": {
            "temperature": {"low": 1.0, "high": 4.0},
            "alpha": {"low": 0.0, "high": 1.0},
            "lr": {"low": 5e-5, "high": 3e-4, "log": True},
            "epochs": 0.5,
        },
        "n_trials": 3,
        "seed": 0,
        # ONNX export is tested where it matters (test_families, test_api_families); the
        # other study tests skip its few seconds per trial
        "keep": {"onnx": False},
    }
    base.update(overrides)
    return StudySpec.model_validate(base)


def pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return True
    except Exception:
        return False


@contextmanager
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    import psycopg

    name = f"kd_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def ready_engine(url: str, *args: Any, **kwargs: Any) -> Engine:
    """An engine whose kdsearch tables are up to date, as the service or a worker leaves
    them (``make_engine`` itself never migrates)."""
    engine = make_engine(url, *args, **kwargs)
    prepare_schema(engine)
    return engine
