"""Injected dependencies: the shared state (engine, storage, artifact store) and the caller.

Ownership: a study belongs to the owner of the key that created it. Another owner's study
answers 403 (not 404: the ids are random, and a clear "not yours" helps more than it
leaks); admin keys see and manage every study.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import optuna
import sqlalchemy as sa
from fastapi import Depends, Header, HTTPException, Path, Request
from optuna.storages import RDBStorage
from sqlalchemy.engine import Engine

from kdsearch.search import tables
from kdsearch.search.read_cache import StudyReader

from .keys import Principal, verify_key
from .page_cache import LeaderboardPages
from .settings import Settings

ANONYMOUS = Principal(key_id=0, owner="anonymous", is_admin=False)


@dataclass
class ServiceState:
    settings: Settings
    engine: Engine
    storage: RDBStorage
    reader: StudyReader  # loads studies over one trial cache: use it to read trials
    artifact_store: Any
    pages: LeaderboardPages = field(default_factory=LeaderboardPages)  # rendered leaderboards


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.kdsearch
    return state


State = Annotated[ServiceState, Depends(get_state)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def get_principal(state: State, authorization: Annotated[str | None, Header()] = None) -> Principal:
    """The caller from ``Authorization: Bearer <key>``; anonymous only in open mode."""
    return principal_from(state, authorization, state.engine)


def principal_from(
    state: ServiceState, authorization: str | None, bind: Engine | sa.Connection
) -> Principal:
    """:func:`get_principal` on a given connection (a request that makes several lookups
    makes them on one)."""
    if not authorization:
        if state.settings.open_mode:
            return ANONYMOUS
        raise _unauthorized(
            "missing API key: send 'Authorization: Bearer <key>' "
            "(create one with `kdsearch keys create`)"
        )
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise _unauthorized("Authorization header must be 'Bearer <key>'")
    principal = verify_key(bind, key.strip())
    if principal is None:
        raise _unauthorized(
            "invalid or revoked API key: check the key, or create one with `kdsearch keys create`"
        )
    return principal


Caller = Annotated[Principal, Depends(get_principal)]


def can_see(principal: Principal, run: tables.StudyRun) -> bool:
    return principal.is_admin or run.owner == principal.owner


def get_run(
    study_id: Annotated[str, Path(max_length=255)], state: State, principal: Caller
) -> tables.StudyRun:
    """The study's registry row, when it exists and the caller may see it."""
    return run_for(study_id, state, principal, state.engine)


def run_for(
    study_id: str, state: ServiceState, principal: Principal, bind: Engine | sa.Connection
) -> tables.StudyRun:
    """:func:`get_run` on a given connection."""
    run = tables.get(bind, study_id)
    if run is None:
        raise HTTPException(404, f"study {study_id!r} does not exist: list yours at /v1/studies")
    if not can_see(principal, run):
        raise HTTPException(403, f"study {study_id!r} belongs to another owner")
    return run


Run = Annotated[tables.StudyRun, Depends(get_run)]


def load_study(state: ServiceState, run: tables.StudyRun) -> optuna.Study:
    try:
        return state.reader.load(run.study_name)
    except KeyError:
        raise HTTPException(
            404, f"study {run.study_name!r} has no Optuna record (deleted by hand?)"
        ) from None
