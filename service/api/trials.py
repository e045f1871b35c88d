"""``/v1/studies/{id}/trials``: the leaderboard, one trial, and its plots."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Path, Query
from fastapi.responses import Response, StreamingResponse
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from kdsearch.search import tables
from kdsearch.search.leaderboard import PER_LABEL_ATTR, best_first, pareto_front, trial_row

from ..deps import Run, ServiceState, State, load_study, principal_from, run_for
from ..schemas import TrialDetail, TrialPage, json_safe
from .studies import ERRORS

router = APIRouter(prefix="/v1/studies/{study_id}/trials", tags=["trials"])

CHUNK = 1 << 16


def _states(raw: str | None) -> set[str] | None:
    if raw is None:
        return None
    wanted = {s.strip().upper() for s in raw.split(",") if s.strip()}
    known = [s.name for s in TrialState]
    unknown = sorted(wanted.difference(known))
    if unknown or not wanted:
        raise HTTPException(
            422,
            f"state: unknown trial state(s) {', '.join(unknown) or '(empty)'}: "
            f"use any of {', '.join(known)}, comma-separated",
        )
    return wanted


@router.get("", responses=ERRORS, response_model=TrialPage)
def list_trials(
    state: State,
    study_id: Annotated[str, Path(max_length=255)],
    authorization: Annotated[str | None, Header()] = None,
    sort: Annotated[str | None, Query(description="a metric name, number or duration_s")] = None,
    order: Annotated[
        Literal["asc", "desc"] | None,
        Query(description="default: best first (a metric's own direction), else descending"),
    ] = None,
    trial_state: Annotated[
        str | None, Query(alias="state", description="e.g. COMPLETE or COMPLETE,FAIL")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """The leaderboard page; served from memory while the study is unchanged
    (``service.page_cache``)."""
    # the caller, the study's record and its change marker: one connection, one thread hop
    with state.engine.connect() as conn:
        run = run_for(study_id, state, principal_from(state, authorization, conn), conn)
        states = _states(trial_state)
        try:
            optuna_id, marker = state.reader.change_marker(run.study_name, conn)
        except KeyError:
            load_study(state, run)  # raises the 404 that names the missing record
            raise

    def load() -> tuple[list[FrozenTrial], list[StudyDirection], list[str] | None]:
        study = load_study(state, run)
        return study.get_trials(deepcopy=False), study.directions, study.metric_names

    try:
        body = state.pages.page(
            (run.study_name, optuna_id),
            marker,
            load,
            run.results,
            sort=sort,
            descending=best_first(sort) if order is None else order == "desc",
            states=states,
            limit=limit,
            offset=offset,
        )
    except ValueError as exc:  # states are checked above: this is the sort key
        raise HTTPException(422, f"sort: {exc}") from None
    return Response(body, media_type="application/json")


def _trial(state: ServiceState, run: tables.StudyRun, number: int) -> tuple[Any, FrozenTrial]:
    study = load_study(state, run)
    trials = study.get_trials(deepcopy=False)
    found = [t for t in trials if t.number == number]
    if not found:
        raise HTTPException(
            404, f"trial {number} does not exist: study {run.study_name} has {len(trials)} trials"
        )
    return study, found[0]


def _artifacts(
    state: ServiceState, study_name: str, number: int, kind: str
) -> list[dict[str, Any]]:
    return [
        a
        for a in tables.list_artifacts(state.engine, study_name, kind=kind)
        if a["trial_number"] == number
    ]


@router.get("/{number}", responses=ERRORS)
def get_trial(state: State, run: Run, number: int) -> TrialDetail:
    study, trial = _trial(state, run, number)
    front = {t.number for t in pareto_front(study.get_trials(deepcopy=False), study.directions)}
    base = f"/v1/studies/{run.study_name}"
    plots = {
        a["name"].removesuffix(".png"): f"{base}/trials/{number}/plots/{a['name']}"
        for a in _artifacts(state, run.study_name, number, "plot")
    }
    has_ckpt = bool(_artifacts(state, run.study_name, number, "checkpoint"))
    return TrialDetail(
        **json_safe(trial_row(trial, front, run.results)),
        constraints=json_safe(dict(trial.constraints)),
        config=json_safe(trial.user_attrs.get("config")),
        per_label=json_safe(trial.user_attrs.get(PER_LABEL_ATTR)),
        plots=plots,
        checkpoint=f"{base}/checkpoint?trial={number}" if has_ckpt else None,
    )


def stream_artifact(store: Any, artifact_id: str, what: str) -> Iterator[bytes]:
    """Open before answering, so a missing file is a 404 and not a cut-off 200."""
    try:
        reader = store.open_reader(artifact_id)
    except Exception:
        raise HTTPException(
            404, f"{what} is recorded but missing from the artifact store: ask an operator"
        ) from None
    return _chunks(reader)


def _chunks(reader: Any) -> Iterator[bytes]:
    try:
        while chunk := reader.read(CHUNK):
            yield chunk
    finally:
        reader.close()


@router.get(
    "/{number}/plots/{name}.png",
    responses={**ERRORS, 200: {"content": {"image/png": {}}}},
    response_class=StreamingResponse,
)
def get_plot(
    state: State,
    run: Run,
    number: int,
    name: Annotated[str, Path(max_length=200)],
) -> StreamingResponse:
    _trial(state, run, number)
    plots = {a["name"]: a for a in _artifacts(state, run.study_name, number, "plot")}
    found = plots.get(f"{name}.png")
    if found is None:
        have = ", ".join(sorted(plots)) or "none yet"
        raise HTTPException(404, f"name: trial {number} has no plot {name!r}.png (it has: {have})")
    return StreamingResponse(
        stream_artifact(state.artifact_store, found["artifact_id"], f"plot {name}.png"),
        media_type="image/png",
    )
