"""Intermediate objective vectors of a trial, and where in its training budget each was taken.

Optuna 5 raises ``NotImplementedError`` from ``Trial.report`` when a study has more than one
objective, and its pruners only read ``FrozenTrial.intermediate_values`` (one float per step).
So a trial stores its intermediate objective *vectors* itself, as the user attribute
:data:`INTERMEDIATE_ATTR`: a JSON object ``{"<step>": [v_1, ..., v_k]}`` with one value per
objective, in the study's objective order (:func:`record_intermediate` writes it,
:func:`intermediate_vectors` reads it back).

Steps count optimiser steps (``distill.train.EvalEvent.step``). Trials with different
``batch_size``, ``epochs`` or training-set sizes run different numbers of steps, so a step
number alone does not say how far a trial has come. Each trial also stores its whole budget
in optimiser steps as :data:`BUDGET_ATTR` (:func:`record_budget`), and
:func:`progress_curve` turns the vectors into ``(progress, vector)`` points with progress
``step / budget`` in ``(0, 1]``. :func:`vector_at` reads a curve at any progress by linear
interpolation between its neighbouring evaluations.
"""

from __future__ import annotations

import bisect
import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import BaseTrial, FrozenTrial

__all__ = [
    "BUDGET_ATTR",
    "INTERMEDIATE_ATTR",
    "as_float",
    "budget_steps",
    "check_step",
    "intermediate_vectors",
    "progress_curve",
    "record_budget",
    "record_intermediate",
    "vector_at",
]

INTERMEDIATE_ATTR = "kd_intermediate"
BUDGET_ATTR = "kd_budget_steps"
# progress values closer than this count as the same point (floating-point slack)
_EPS = 1e-9


def check_step(step: int) -> int:
    try:
        value = operator.index(step)
    except TypeError:
        value = -1
    if isinstance(step, bool) or value < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    return value


def as_float(v: Any) -> float:
    if v is None or isinstance(v, bool):
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def record_intermediate(trial: BaseTrial, step: int, values: Sequence[float]) -> None:
    """Store the objective vector ``values`` of ``trial`` at ``step`` (merged into the attr).

    A later call for the same step replaces the earlier vector. Non-finite numbers are stored
    as JSON ``null`` and read back as NaN, which ranks as the worst value when comparing.
    For a live :class:`optuna.Trial` the vector length must match the study's objectives.
    """
    step = check_step(step)
    vector = [float(v) for v in values]
    if not vector:
        raise ValueError("values must hold one value per objective, got an empty sequence")
    if isinstance(trial, optuna.Trial):
        n_objectives = len(trial.study.directions)
        if len(vector) != n_objectives:
            raise ValueError(
                f"values has {len(vector)} entries but the study has {n_objectives} objectives"
            )
    stored: dict[str, Any] = {}
    current = trial.user_attrs.get(INTERMEDIATE_ATTR)
    if isinstance(current, Mapping):
        stored.update(current)
    stored[str(step)] = [v if math.isfinite(v) else None for v in vector]
    trial.set_user_attr(INTERMEDIATE_ATTR, stored)


def record_budget(trial: BaseTrial, total_steps: int) -> None:
    """Store the trial's whole training budget in optimiser steps (once; it does not change)."""
    total = check_step(total_steps)
    if total < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps!r}")
    if trial.user_attrs.get(BUDGET_ATTR) != total:
        trial.set_user_attr(BUDGET_ATTR, total)


def budget_steps(trial: FrozenTrial) -> int | None:
    """The trial's budget in optimiser steps, or None when it did not record one."""
    raw = trial.user_attrs.get(BUDGET_ATTR)
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not raw >= 1:
        return None
    return int(raw)


def intermediate_vectors(trial: FrozenTrial) -> dict[int, list[float]]:
    """The trial's intermediate objective vectors by step, sorted by step.

    Read from the :data:`INTERMEDIATE_ATTR` user attribute; a trial without it (a
    single-objective trial that used ``trial.report``) gives its ``intermediate_values`` as
    one-element vectors. Malformed entries are skipped; ``null`` values come back as NaN.
    """
    raw = trial.user_attrs.get(INTERMEDIATE_ATTR)
    out: dict[int, list[float]] = {}
    if isinstance(raw, Mapping):
        for key, vec in raw.items():
            try:
                step = int(key)
            except (TypeError, ValueError):
                continue
            if step < 0 or not isinstance(vec, list | tuple) or not vec:
                continue
            out[step] = [as_float(v) for v in vec]
    elif trial.intermediate_values:
        out = {int(s): [as_float(v)] for s, v in trial.intermediate_values.items()}
    return dict(sorted(out.items()))


def progress_curve(trial: FrozenTrial) -> list[tuple[float, list[float]]]:
    """``(step / budget, vector)`` points sorted by progress; empty without a budget."""
    budget = budget_steps(trial)
    if budget is None:
        return []
    return [(step / budget, vec) for step, vec in intermediate_vectors(trial).items()]


def vector_at(
    curve: Sequence[tuple[float, Sequence[float]]], progress: float
) -> list[float] | None:
    """The curve's vector at ``progress``: a recorded point, or the straight line between the
    two recorded points around it. None outside the recorded span (a peer that was stopped
    earlier, or evaluated later for the first time, says nothing about that point). A NaN
    component stays NaN (the worst value)."""
    if not curve:
        return None
    xs = [p for p, _ in curve]
    if progress < xs[0] - _EPS or progress > xs[-1] + _EPS:
        return None
    i = bisect.bisect_left(xs, progress - _EPS)
    x1, v1 = curve[i]
    if abs(x1 - progress) <= _EPS or i == 0:
        return [float(v) for v in v1]
    x0, v0 = curve[i - 1]
    w = (progress - x0) / (x1 - x0)
    return [float(a) + w * (float(b) - float(a)) for a, b in zip(v0, v1, strict=True)]
