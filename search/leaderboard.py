"""Best trials and the leaderboard of a study.

Pareto front: the COMPLETE trials that no other COMPLETE trial dominates on the study's
objectives. When any trial of the study carries constraints, only feasible trials (every
constraint value <= 0) take part. This is exactly Optuna's ``study.best_trials``.

Recommended trial — THE RULE:

1. Candidates are the COMPLETE trials that meet the constraints (every constraint value set
   with ``trial.set_constraint`` is <= 0; a trial without constraints meets them).
2. The candidate with the highest ``metric:accuracy`` user attribute wins.
3. Ties (equal accuracy) go to the lower ``metric:conf_sigma``; a missing (None) or NaN
   conf_sigma ranks after any number.
4. Remaining ties go to the lower trial number.
5. A candidate with a missing (None) or NaN accuracy ranks after every candidate with one.
6. No candidate: no recommendation (None).

Metrics are the trial user attributes named ``metric:<name>`` (``metric:accuracy``,
``metric:conf_sigma``, ...); a metric value may be None.

Once the study has ended, its final results (``search.final``) may name another trial: when
winners were re-run with fresh seeds, THE RULE is applied to their confirmed validation
means instead, and that choice is the recommendation. Pass the results as ``final``.
Leaderboard rows then carry the trial's test metrics (``test``) and confirmed statistics
(``confirmed``) where it has them, and sort keys ``test:<metric>`` are accepted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from kdsearch.distill.metric_registry import objective_metrics
from kdsearch.distill.metrics import TEST_PREFIX

from .dominance import front_indices

__all__ = [
    "METRIC_PREFIX",
    "all_rows",
    "best_first",
    "is_feasible",
    "leaderboard",
    "pareto_front",
    "recommended_trial",
    "select_rows",
    "sort_keys",
    "trial_metrics",
    "trial_row",
]

METRIC_PREFIX = "metric:"
SPEED_SWEEP_ATTR = "speed_sweep"  # an early-exit trial's trade-off rows (user attribute)
PER_LABEL_ATTR = "per_label"  # a multi-label trial's metrics by label (user attribute)
_BUILTIN_SORT_KEYS = ("number", "duration_s")


def best_first(sort: str | None) -> bool:
    """The order that puts the best rows first for sort key ``sort`` (``test:<metric>`` too):
    descending for a metric to maximise, ascending for one to minimise; descending for
    anything else (``number``, ``duration_s``, no sort)."""
    metric = (sort or "").removeprefix(TEST_PREFIX)
    return objective_metrics().get(metric, "maximize") == "maximize"


def is_feasible(trial: FrozenTrial) -> bool:
    """True when every constraint value is <= 0 (a trial without constraints is feasible)."""
    return all(v <= 0.0 for v in trial.constraints.values())


def pareto_front(
    trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]
) -> list[FrozenTrial]:
    """COMPLETE, non-dominated trials, in input order; feasible only if any has constraints.

    Trials with equal objective vectors are all kept (neither dominates the other), as in
    ``study.best_trials``.
    """
    constrained = any(len(t.constraints) > 0 for t in trials)
    pool = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE
        and t.values is not None
        and (not constrained or is_feasible(t))
    ]
    for t in pool:
        if len(t.values) != len(directions):
            raise ValueError(
                f"trial {t.number} has {len(t.values)} values but there are "
                f"{len(directions)} objectives"
            )
    return [pool[i] for i in front_indices([t.values for t in pool], directions)]


def trial_metrics(trial: FrozenTrial) -> dict[str, Any]:
    """The trial's ``metric:<name>`` user attributes, prefix stripped."""
    return {
        key[len(METRIC_PREFIX) :]: value
        for key, value in trial.user_attrs.items()
        if key.startswith(METRIC_PREFIX)
    }


def number_or_none(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def recommendation_key(t: FrozenTrial) -> tuple[bool, float, bool, float, int]:
    """THE RULE as a sort key: accuracy down, then conf_sigma up (missing last), then number."""
    acc = number_or_none(t.user_attrs.get(f"{METRIC_PREFIX}accuracy"))
    sigma = number_or_none(t.user_attrs.get(f"{METRIC_PREFIX}conf_sigma"))
    return (
        acc is None,
        -acc if acc is not None else 0.0,
        sigma is None,
        sigma if sigma is not None else 0.0,
        t.number,
    )


def recommended_trial(
    trials: Sequence[FrozenTrial], final: Mapping[str, Any] | None = None
) -> FrozenTrial | None:
    """The recommended trial: the study's final choice when ``final`` has one, else THE
    RULE in this module's docstring (None when no trial qualifies)."""
    chosen = final.get("recommended") if final else None
    if chosen is not None:
        for t in trials:
            if t.number == chosen:
                return t
    candidates = [t for t in trials if t.state == TrialState.COMPLETE and is_feasible(t)]
    if not candidates:
        return None
    return min(candidates, key=recommendation_key)


def final_of(trial_number: int, final: Mapping[str, Any] | None) -> dict[str, Any]:
    """The trial's test metrics, confirmed statistics and test intervals from ``final``."""
    if not final:
        return {"test": None, "confirmed": None, "intervals": None}
    key = str(trial_number)
    return {
        "test": final.get("test", {}).get(key),
        "confirmed": final.get("confirmed", {}).get(key),
        "intervals": final.get("intervals", {}).get(key),
    }


def trial_row(
    trial: FrozenTrial, pareto_numbers: set[int], final: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """One leaderboard row (JSON-able when the params and metrics are)."""
    duration = trial.duration
    config = trial.user_attrs.get("config") or {}
    return {
        "number": trial.number,
        "state": trial.state.name,
        "method": (config.get("distill") or {}).get("method"),
        "params": dict(trial.params),
        "metrics": trial_metrics(trial),
        "values": list(trial.values) if trial.values is not None else None,
        "pareto": trial.number in pareto_numbers,
        "feasible": is_feasible(trial),
        "duration_s": duration.total_seconds() if duration is not None else None,
        "error": trial.user_attrs.get("error"),
        **final_of(trial.number, final),
    }


def _sort_value(row: dict[str, Any], sort: str) -> float | None:
    if sort in _BUILTIN_SORT_KEYS:
        return number_or_none(row[sort])
    if sort.startswith(TEST_PREFIX):
        return number_or_none((row["test"] or {}).get(sort[len(TEST_PREFIX) :]))
    return number_or_none(row["metrics"].get(sort))


def all_rows(
    trials: Sequence[FrozenTrial],
    directions: Sequence[StudyDirection],
    final: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every trial's row, by trial number, with its Pareto flag."""
    pareto_numbers = {t.number for t in pareto_front(trials, directions)}
    return [trial_row(t, pareto_numbers, final) for t in sorted(trials, key=lambda t: t.number)]


def sort_keys(rows: Sequence[dict[str, Any]], metric_names: Sequence[str] | None) -> list[str]:
    """The keys ``sort`` accepts for these rows: their metrics (and ``test:<metric>``s), the
    study's metric names, ``number`` and ``duration_s``."""
    metric_keys = {k for row in rows for k in row["metrics"]}
    metric_keys |= {f"{TEST_PREFIX}{k}" for row in rows for k in (row["test"] or {})}
    metric_keys.update(metric_names or [])
    return sorted(metric_keys) + list(_BUILTIN_SORT_KEYS)


def select_rows(
    rows: Sequence[dict[str, Any]],
    allowed: Sequence[str],
    sort: str | None = None,
    descending: bool = True,
    states: set[str] | None = None,
) -> list[dict[str, Any]]:
    """Filter ``rows`` (from :func:`all_rows`) by state and sort them; see :func:`leaderboard`."""
    if sort is not None and sort not in allowed:
        raise ValueError(f"unknown sort key {sort!r}: use one of {', '.join(allowed)}")
    out = list(rows)
    if states is not None:
        wanted = {s.upper() for s in states}
        known = [s.name for s in TrialState]
        unknown = sorted(wanted.difference(known))
        if unknown:
            raise ValueError(
                f"unknown trial state(s) {', '.join(unknown)}: use any of {', '.join(known)}"
            )
        out = [r for r in out if r["state"] in wanted]
    if sort is not None:
        present = [r for r in out if _sort_value(r, sort) is not None]
        missing = [r for r in out if _sort_value(r, sort) is None]
        # sorted() is stable: equal values keep trial-number order in both directions.
        sign = -1.0 if descending else 1.0
        present.sort(key=lambda r: sign * (_sort_value(r, sort) or 0.0))
        out = present + missing
    return out


def leaderboard(
    study: optuna.Study,
    sort: str | None = None,
    descending: bool = True,
    states: set[str] | None = None,
    final: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Rows for the study's trials (by trial number unless ``sort`` names a metric).

    ``sort``: a metric name found in the trials (or in ``study.metric_names``), ``"number"``
    or ``"duration_s"``; rows without a value for it come last in both orders, ties keep
    trial-number order. ``states``: keep only trials in these state names (e.g.
    ``{"COMPLETE", "FAIL"}``, case-insensitive).
    """
    rows = all_rows(study.get_trials(deepcopy=False), study.directions, final)
    return select_rows(rows, sort_keys(rows, study.metric_names), sort, descending, states)
