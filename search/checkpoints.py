"""Which stored checkpoint a study hands out: the recommended trial's, or a chosen one's.

The REST route (``GET /v1/studies/{id}/checkpoint``) and the Python API
(``kdsearch.Study.checkpoint``) both ask here, so they agree on the trial and the errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from optuna.trial import FrozenTrial
from sqlalchemy.engine import Engine

from kdsearch.distill.errors import KDSearchError

from . import tables
from .artifacts import CHECKPOINT
from .leaderboard import recommended_trial


class NoCheckpoint(KDSearchError):
    """No checkpoint to hand out. ``reason``: ``no_recommendation`` (no complete trial meets
    the constraints yet) or ``not_kept`` (that trial has none: never stored, or deleted by
    the keep policy). ``kept``: the trial numbers that have one."""

    def __init__(
        self, reason: Literal["no_recommendation", "not_kept"], message: str, kept: list[int]
    ):
        super().__init__(message)
        self.reason, self.kept = reason, kept


@dataclass(frozen=True)
class StoredCheckpoint:
    trial: int
    artifact: dict[str, Any]  # the artifact row: artifact_id, sha256, size_bytes, ...


def find_checkpoint(
    engine: Engine,
    run: tables.StudyRun,
    trials: Sequence[FrozenTrial],
    trial: int | None = None,
) -> StoredCheckpoint:
    """The checkpoint of ``trial``, or of the recommended trial when ``trial`` is None."""
    kept = {
        a["trial_number"]: a
        for a in tables.list_artifacts(engine, run.study_name, kind="checkpoint")
        if a["name"] == CHECKPOINT
    }
    have = ", ".join(str(n) for n in sorted(kept)) or "none"
    if trial is None:
        best = recommended_trial(trials, run.results)
        if best is None:
            raise NoCheckpoint(
                "no_recommendation",
                f"study {run.study_name} ({run.status}) has no recommended trial yet: no "
                f"complete trial meets the constraints (trials with a checkpoint: {have})",
                sorted(kept),
            )
        trial = best.number
    artifact = kept.get(trial)
    if artifact is None:
        raise NoCheckpoint(
            "not_kept",
            f"trial {trial} has no checkpoint (never stored, or deleted by the keep policy); "
            f"trials with one: {have}",
            sorted(kept),
        )
    return StoredCheckpoint(trial, artifact)
