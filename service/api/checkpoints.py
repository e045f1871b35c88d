"""``/v1/studies/{id}/checkpoint``: the recommended (or a chosen) student, as a .tar.gz."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import StreamingResponse

from kdsearch.search.checkpoints import NoCheckpoint, find_checkpoint

from ..deps import Run, State, load_study
from .studies import ERRORS
from .trials import stream_artifact

router = APIRouter(prefix="/v1/studies/{study_id}", tags=["checkpoints"])


@router.get(
    "/checkpoint",
    responses={**ERRORS, 200: {"content": {"application/gzip": {}}}},
    response_class=StreamingResponse,
)
def get_checkpoint(
    state: State,
    run: Run,
    trial: Annotated[int | None, Query(ge=0, description="default: the recommended")] = None,
) -> StreamingResponse:
    """A Hugging Face model folder under ``checkpoint/``, with ``X-Checksum-SHA256``."""
    trials = load_study(state, run).get_trials(deepcopy=False) if trial is None else []
    try:
        found = find_checkpoint(state.engine, run, trials, trial)
    except NoCheckpoint as exc:
        if exc.reason == "no_recommendation":
            raise HTTPException(
                409, f"{exc}. Poll GET /v1/studies/{run.study_name}, or pass ?trial=N"
            ) from None
        raise HTTPException(404, f"trial: {exc}") from None
    trial, artifact = found.trial, found.artifact
    headers = {
        "Content-Disposition": f'attachment; filename="{run.study_name}-trial{trial}.tar.gz"',
        "X-Checksum-SHA256": artifact["sha256"] or "",
        "X-Trial-Number": str(trial),
    }
    if artifact["size_bytes"] is not None:
        headers["Content-Length"] = str(artifact["size_bytes"])
    return StreamingResponse(
        stream_artifact(
            state.artifact_store, artifact["artifact_id"], f"checkpoint of trial {trial}"
        ),
        media_type="application/gzip",
        headers=headers,
    )
