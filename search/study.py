"""Spec -> Optuna study: creation and status (samplers and pruners: ``search.samplers``,
``search.pruners``)."""

from __future__ import annotations

import uuid
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import Engine

from . import tables
from .spec import StudySpec

SPEC_ATTR = "kdsearch:spec"


def create(
    engine: Engine,
    storage: BaseStorage | str,
    spec: StudySpec,
    *,
    study_name: str | None = None,
    owner: str | None = None,
    max_active: int | None = None,
) -> str:
    """Create the Optuna study and its kdsearch record; returns the study name.

    With ``max_active``, raises :class:`kdsearch.search.tables.QuotaExceeded` (and leaves nothing
    behind) when the owner already has that many queued or running studies.
    """
    name = study_name or spec.name or f"kd-{uuid.uuid4().hex[:10]}"
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        directions=[
            StudyDirection.MAXIMIZE if d == "maximize" else StudyDirection.MINIMIZE
            for d in spec.directions
        ],
    )
    study.set_metric_names(spec.metric_names)
    spec_json = spec.model_dump(mode="json")
    study.set_user_attr(SPEC_ATTR, spec_json)
    try:
        tables.register(engine, name, spec_json, spec.n_trials, spec.timeout_s, owner, max_active)
    except BaseException:
        optuna.delete_study(study_name=name, storage=storage)
        raise
    return name


def counted(trial: FrozenTrial) -> bool:
    """Does this trial use up budget? Not when its worker died or was stopped."""
    if trial.state == TrialState.FAIL and trial.user_attrs.get("abandoned"):
        return False
    return trial.state != TrialState.FAIL or "error" in trial.user_attrs


def consecutive_failures(trials: list[FrozenTrial]) -> tuple[int, str | None]:
    """Failed trials (with an error) in a row at the end, and the latest error."""
    done = [t for t in trials if t.state.is_finished() and counted(t)]
    done.sort(key=lambda t: t.number)
    n, last = 0, None
    for t in reversed(done):
        if t.state != TrialState.FAIL:
            break
        n += 1
        last = last or t.user_attrs.get("error")
    return n, last


def state_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    counts: dict[str, int] = {s.name: 0 for s in TrialState}
    for t in trials:
        counts[t.state.name] += 1
    return counts


def summary(engine: Engine, study: optuna.Study) -> dict[str, Any]:
    run = tables.get(engine, study.study_name)
    trials = study.get_trials(deepcopy=False)
    return {
        "study": study.study_name,
        "status": run.status if run else "unknown",
        "error": run.error if run else None,
        "n_trials": run.n_trials if run else None,
        "trials": state_counts(trials),
    }
