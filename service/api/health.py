"""Liveness and readiness."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException

from ..deps import State

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "the database does not answer"}})
def readyz(state: State) -> dict[str, str]:
    try:
        with state.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HTTPException(503, f"database is unreachable: {first}") from None
    return {"status": "ready"}
