"""``/v1/studies/{id}/report``: the confidence report as one self-contained HTML page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from kdsearch.search.report import build_report
from kdsearch.search.report_html import render_report

from ..deps import Run, State, load_study
from .studies import ERRORS

router = APIRouter(prefix="/v1/studies/{study_id}", tags=["report"])


@router.get(
    "/report",
    responses={**ERRORS, 200: {"content": {"text/html": {}}}},
    response_class=HTMLResponse,
)
def get_report(
    state: State,
    run: Run,
    kappa: Annotated[
        float | None,
        Query(gt=0, le=1, description="threshold for conf_sigma (default: the spec's)"),
    ] = None,
) -> HTMLResponse:
    """Pareto front, reliability diagrams, importances, leaderboard and the verdict."""
    study = load_study(state, run)
    report = build_report(study, state.engine, state.artifact_store, kappa=kappa)
    return HTMLResponse(render_report(report))
