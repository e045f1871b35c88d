"""``/v1/studies``: create, list, inspect, cancel and delete studies."""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from optuna.trial import FrozenTrial
from pydantic import ValidationError

from kdsearch.search import jobs, tables
from kdsearch.search import study as study_mod
from kdsearch.search.leaderboard import final_of, pareto_front, recommended_trial, trial_metrics
from kdsearch.search.spec import StudySpec

from ..deps import Caller, Run, ServiceState, State, load_study
from ..openapi import spec_request_body
from ..schemas import (
    CancelOut,
    EndJobs,
    ErrorOut,
    ParetoPoint,
    RecommendedTrial,
    StudyCreated,
    StudyDetail,
    StudyItem,
    StudyLinks,
    StudyPage,
    describe_errors,
    json_safe,
)
from .safety import check_spec, quota_error

router = APIRouter(prefix="/v1/studies", tags=["studies"])

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (401, 403, 404, 409, 413, 422, 429)
}


def links(study_id: str) -> StudyLinks:
    base = f"/v1/studies/{study_id}"
    return StudyLinks(self=base, trials=f"{base}/trials", checkpoint=f"{base}/checkpoint")


async def _read_limited(request: Request, limit: int) -> bytes:
    too_big = HTTPException(
        413, f"body: the spec is larger than this server's limit of {limit} bytes: shorten it"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    size, chunks = 0, []
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


async def spec_body(request: Request, state: State) -> StudySpec:
    """The request body as a StudySpec: size-limited, JSON, validated; 4xx otherwise."""
    raw = await _read_limited(request, state.settings.max_spec_bytes)
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HTTPException(422, f"body: not valid JSON ({exc}): send a JSON object") from None
    if not isinstance(data, dict):
        raise HTTPException(422, "body: must be a JSON object holding a study spec")
    try:
        return StudySpec.model_validate(data)
    except ValidationError as exc:
        raise HTTPException(422, describe_errors(exc.errors())) from None


@router.post("", status_code=201, responses=ERRORS, openapi_extra=spec_request_body())
def create_study(
    state: State, principal: Caller, spec: Annotated[StudySpec, Depends(spec_body)]
) -> StudyCreated:
    check_spec(spec, state.settings)
    # Ids are ours (the spec's name is a label): URL-safe and never shared between owners.
    try:
        name = study_mod.create(
            state.engine,
            state.storage,
            spec,
            study_name=f"kd-{uuid.uuid4().hex[:12]}",
            owner=principal.owner,
            max_active=state.settings.max_active_studies_per_key,
        )
    except tables.QuotaExceeded as exc:
        raise quota_error(exc) from None
    return StudyCreated(id=name, status="queued", links=links(name))


@router.get("", responses=ERRORS)
def list_studies(
    state: State,
    principal: Caller,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> StudyPage:
    t = tables.study_runs
    where = [] if principal.is_admin else [t.c.owner == principal.owner]
    with state.engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(t).where(*where)).scalar()
        rows = conn.execute(
            sa.select(t)
            .where(*where)
            .order_by(t.c.created_at.desc(), t.c.study_name)
            .limit(limit)
            .offset(offset)
        ).all()
    items = [
        StudyItem(
            id=r.study_name,
            name=json.loads(r.spec_json).get("name"),
            status=r.status,
            owner=r.owner,
            n_trials=r.n_trials,
            created_at=r.created_at,
            links=links(r.study_name),
        )
        for r in rows
    ]
    return StudyPage(total=int(total or 0), limit=limit, offset=offset, items=items)


def _recommended(best: FrozenTrial, results: dict[str, Any] | None) -> RecommendedTrial:
    extra = final_of(best.number, results)
    return RecommendedTrial(
        number=best.number,
        params=best.params,
        metrics=json_safe(trial_metrics(best)),
        test_metrics=json_safe(extra["test"]),
        confirmed=json_safe(extra["confirmed"]),
        intervals=json_safe(extra["intervals"]),
        chosen_by=(results or {}).get("recommended_by", "validation"),
    )


def _end_jobs(state: ServiceState, run: tables.StudyRun) -> EndJobs | None:
    counts = jobs.progress(state.engine, run.study_name)
    if not counts["total"]:
        return None
    errors = (run.results or {}).get("errors", [])
    return EndJobs(**counts, errors=errors)


@router.get("/{study_id}", responses=ERRORS)
def get_study(state: State, run: Run) -> StudyDetail:
    study = load_study(state, run)
    trials = study.get_trials(deepcopy=False)
    front = pareto_front(trials, study.directions)
    best = recommended_trial(trials, run.results)
    return StudyDetail(
        id=run.study_name,
        name=run.spec.get("name"),
        status=run.status,
        owner=run.owner,
        n_trials=run.n_trials,
        created_at=run.created_at,
        objectives=list(study.metric_names or []),
        directions=[d.name.lower() for d in study.directions],
        trials=study_mod.state_counts(trials),
        pareto_front=[
            ParetoPoint(number=t.number, values=json_safe(list(t.values or []))) for t in front
        ],
        recommended=None if best is None else _recommended(best, run.results),
        end_jobs=_end_jobs(state, run),
        error=run.error,
        links=links(run.study_name),
    )


@router.post("/{study_id}/cancel", responses=ERRORS)
def cancel_study(state: State, run: Run) -> CancelOut:
    if not tables.set_status(state.engine, run.study_name, "cancelled"):
        current = tables.get(state.engine, run.study_name)
        status = current.status if current else run.status
        raise HTTPException(
            409, f"status: study is {status}; only queued or running studies can be cancelled"
        )
    return CancelOut(id=run.study_name, status="cancelled")


@router.delete("/{study_id}", status_code=204, responses=ERRORS)
def delete_study(state: State, run: Run) -> Response:
    if run.status in tables.ACTIVE:
        raise HTTPException(
            409,
            f"status: study is {run.status}: cancel it first "
            f"(POST /v1/studies/{run.study_name}/cancel), then delete it",
        )
    _delete_everything(state, run.study_name)
    return Response(status_code=204)


def _delete_everything(state: ServiceState, name: str) -> None:
    for a in tables.list_artifacts(state.engine, name):
        with contextlib.suppress(Exception):  # already gone from the store: fine
            state.artifact_store.remove(a["artifact_id"])
    with state.engine.begin() as conn:
        conn.execute(tables.artifacts.delete().where(tables.artifacts.c.study_name == name))
        conn.execute(tables.study_runs.delete().where(tables.study_runs.c.study_name == name))
    with contextlib.suppress(KeyError):
        state.reader.delete(name)
