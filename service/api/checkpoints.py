"""``/v1/studies/{id}/checkpoint``: the recommended (or a chosen) student, as a .tar.gz."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import StreamingResponse

from kdsearch.search import registry
from kdsearch.search.artifacts import CHECKPOINT
from kdsearch.search.leaderboard import recommended_trial

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
    kept = {
        a["trial_number"]: a
        for a in registry.list_artifacts(state.engine, run.study_name, kind="checkpoint")
        if a["name"] == CHECKPOINT
    }
    have = ", ".join(str(n) for n in sorted(kept)) or "none"
    if trial is None:
        trials = load_study(state, run).get_trials(deepcopy=False)
        best = recommended_trial(trials, run.results)
        if best is None:
            raise HTTPException(
                409,
                f"study {run.study_name} ({run.status}) has no recommended trial yet: no "
                "complete trial meets the constraints. Poll GET "
                f"/v1/studies/{run.study_name}, or pass ?trial=N (trials with a checkpoint: "
                f"{have})",
            )
        trial = best.number
    artifact = kept.get(trial)
    if artifact is None:
        raise HTTPException(
            404,
            f"trial: trial {trial} has no checkpoint (never stored, or deleted by the keep "
            f"policy); trials with one: {have}",
        )
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
