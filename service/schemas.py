"""Response bodies of the REST API (requests are ``search.spec.StudySpec``)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field


class ErrorOut(BaseModel):
    detail: str


class StudyLinks(BaseModel):
    self: str
    trials: str
    checkpoint: str


class StudyCreated(BaseModel):
    id: str
    status: str
    links: StudyLinks


class StudyItem(BaseModel):
    id: str
    name: str | None
    status: str
    owner: str | None
    n_trials: int
    created_at: dt.datetime
    links: StudyLinks


class StudyPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[StudyItem]


class ParetoPoint(BaseModel):
    number: int
    values: list[float | None]


class RecommendedTrial(BaseModel):
    number: int
    params: dict[str, Any]
    metrics: dict[str, Any] = Field(description="validation metrics of the search's run")
    test_metrics: dict[str, Any] | None = Field(
        default=None, description="the same run scored once on the held-out test split"
    )
    confirmed: dict[str, Any] | None = Field(
        default=None,
        description="re-runs with fresh seeds: seeds, mean/std (validation), test_mean/"
        "test_std, ci (bootstrap 95% intervals over test rows)",
    )
    intervals: dict[str, Any] | None = Field(
        default=None, description="bootstrap 95% intervals over the test rows"
    )
    chosen_by: str = Field(
        default="validation",
        description="'validation' (THE RULE on the search's runs) or 'confirmed validation "
        "means' (THE RULE on the means of the fresh-seed re-runs)",
    )


class EndJobs(BaseModel):
    """The study's end: test scoring and confirmation re-runs (never counted in n_trials)."""

    total: int
    pending: int
    running: int
    done: int
    failed: int
    errors: list[dict[str, Any]] = Field(default_factory=list)


class StudyDetail(BaseModel):
    id: str
    name: str | None
    status: str
    owner: str | None
    n_trials: int
    created_at: dt.datetime
    objectives: list[str]
    directions: list[str]
    trials: dict[str, int]
    pareto_front: list[ParetoPoint]
    recommended: RecommendedTrial | None
    end_jobs: EndJobs | None = None
    error: str | None
    links: StudyLinks


class TrialRow(BaseModel):
    number: int
    state: str
    method: str | None = Field(default=None, description="the distillation method it ran")
    params: dict[str, Any]
    metrics: dict[str, Any]
    values: list[float | None] | None
    pareto: bool
    feasible: bool
    duration_s: float | None
    error: str | None
    test: dict[str, Any] | None = Field(
        default=None, description="test-split metrics (recommended and Pareto trials, at the end)"
    )
    confirmed: dict[str, Any] | None = None
    intervals: dict[str, Any] | None = None


class TrialPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[TrialRow]


class TrialDetail(TrialRow):
    constraints: dict[str, float]
    config: dict[str, Any] | None  # the RunConfig this trial trained with
    per_label: dict[str, dict[str, Any]] | None = Field(
        default=None,
        description="multi-label studies: each label's own metrics on the validation split "
        "(the trial's metrics are their macro averages)",
    )
    plots: dict[str, str]
    checkpoint: str | None


class CancelOut(BaseModel):
    id: str
    status: str


def json_safe(value: Any) -> Any:
    """NaN and infinities become None: JSON has no such numbers (metrics may hold them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def describe_errors(errors: Sequence[Any]) -> str:
    """``field.path: message`` for each pydantic error, on one line.

    Like ``distill.configfile.describe_validation_error``, for request errors too: the
    ``path``/``body`` location prefix and pydantic's "Value error, " are dropped.
    """
    parts = []
    for err in errors:
        loc = [str(x) for x in err.get("loc", ())]
        if loc and loc[0] in {"path", "body"}:
            loc = loc[1:]
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            msg = "unknown field (check the spelling against the documented fields)"
        if err.get("type") == "literal_error" and "expected" in err.get("ctx", {}):
            msg = f"must be one of {err['ctx']['expected']}"
        parts.append(f"{'.'.join(loc) or 'request'}: {msg}")
    return "; ".join(parts) or "request: invalid"
