"""The FastAPI application factory.

    uvicorn --factory service.app:app_from_env      # settings from KDSEARCH_* variables

Every error is ``{"detail": "<field>: <what is wrong and how to fix it>"}``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from optuna.exceptions import StorageInternalError
from sqlalchemy import exc as sa_exc

from kdsearch.distill.plugins import load_plugins
from kdsearch.search.artifacts import make_artifact_store
from kdsearch.search.read_cache import StudyReader
from kdsearch.search.storage import (
    database_unavailable,
    make_engine,
    make_storage,
    prepare_schema,
)

from . import openapi
from .api import router
from .api.report import router as report_router
from .dashboard import dashboard_app
from .deps import ServiceState
from .schemas import describe_errors
from .settings import Settings

log = logging.getLogger(__name__)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": describe_errors(exc.errors())}, status_code=422)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # A restarting database, or every pooled connection busy: the client should retry.
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        {"detail": "database: busy or unreachable right now: retry in a few seconds"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


async def _storage_error(request: Request, exc: Exception) -> JSONResponse:
    # Optuna wraps SQLAlchemy's errors: an outage or a full pool is still a 503.
    causes = []
    seen: BaseException | None = exc
    while seen is not None:
        causes.append(seen)
        seen = seen.__cause__ or seen.__context__
    if database_unavailable(exc) or any(isinstance(c, sa_exc.TimeoutError) for c in causes):
        return await _database_unavailable(request, exc)
    return await _internal_error(request, exc)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(
        {"detail": f"internal error ({type(exc).__name__}): the server log has the details"},
        status_code=500,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    load_plugins()  # the spec validation must know the plug-ins' metrics and families
    size, overflow = settings.db_pool_size, settings.db_max_overflow
    engine = make_engine(settings.database_url, size, overflow)
    prepare_schema(engine)  # the service owns its database: it brings the schema up to date
    storage = make_storage(settings.database_url, engine, pool_size=size, max_overflow=overflow)
    app = FastAPI(
        title="kdsearch",
        summary="Knowledge-distillation hyperparameter search, scored on confidence preservation",
        version="0.1.0",
    )
    app.state.kdsearch = ServiceState(
        settings=settings,
        engine=engine,
        storage=storage,
        reader=StudyReader(storage),
        artifact_store=make_artifact_store(settings.artifact_dir),
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    for busy in (sa_exc.TimeoutError, sa_exc.OperationalError, sa_exc.InterfaceError):
        app.add_exception_handler(busy, _database_unavailable)
    app.add_exception_handler(StorageInternalError, _storage_error)
    app.add_exception_handler(Exception, _internal_error)
    app.include_router(router)
    app.include_router(report_router)  # GET /v1/studies/{id}/report
    openapi.install(app)
    # Last: everything the API does not answer goes to optuna-dashboard (see dashboard.py).
    state = app.state.kdsearch
    app.mount(
        "/",
        dashboard_app(storage, state.artifact_store, engine, settings.open_mode),
        name="dashboard",
    )
    return app


def app_from_env() -> FastAPI:
    return create_app(Settings())
