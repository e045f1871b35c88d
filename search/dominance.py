"""Pareto dominance, once: the leaderboard's front, the pruning rules and the keep policy
all compare objective vectors with these functions.

Vectors are compared in *loss* space: each value is mapped so that lower is better
(maximised objectives negated), and a missing value (None, NaN) is the worst possible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from optuna.study import StudyDirection

from .intermediates import as_float

__all__ = ["dominates", "front_indices", "loss", "loss_vector", "pareto_ranks"]


def loss(value: float | None, direction: StudyDirection) -> float:
    """``value`` mapped so that lower is better; None or NaN is the worst (``inf``)."""
    v = as_float(value)
    if math.isnan(v):
        return math.inf
    return -v if direction == StudyDirection.MAXIMIZE else v


def loss_vector(
    values: Sequence[float | None], directions: Sequence[StudyDirection]
) -> tuple[float, ...]:
    if len(values) != len(directions):
        raise ValueError(
            f"a vector of {len(values)} values cannot be compared on {len(directions)} objectives"
        )
    return tuple(loss(v, d) for v, d in zip(values, directions, strict=True))


def _dominates_loss(a: Sequence[float], b: Sequence[float]) -> bool:
    no_worse = all(x <= y for x, y in zip(a, b, strict=True))
    return no_worse and any(x < y for x, y in zip(a, b, strict=True))


def dominates(
    a: Sequence[float | None], b: Sequence[float | None], directions: Sequence[StudyDirection]
) -> bool:
    """True when ``a`` Pareto-dominates ``b``: no worse in every objective, better in one.

    Equal vectors do not dominate each other. NaN counts as the worst possible value.

    >>> from optuna.study import StudyDirection as D
    >>> dominates([0.9, 0.1], [0.8, 0.1], [D.MAXIMIZE, D.MINIMIZE])
    True
    >>> dominates([0.9, 0.1], [0.9, 0.1], [D.MAXIMIZE, D.MINIMIZE])
    False
    """
    if len(a) != len(b):
        raise ValueError(f"vectors of {len(a)} and {len(b)} values cannot be compared")
    return _dominates_loss(loss_vector(a, directions), loss_vector(b, directions))


def front_indices(
    vectors: Sequence[Sequence[float | None]], directions: Sequence[StudyDirection]
) -> list[int]:
    """Indices of the non-dominated vectors, ascending. Equal vectors are all kept (neither
    dominates the other), as in Optuna's ``study.best_trials``.

    >>> from optuna.study import StudyDirection as D
    >>> front_indices([[0.9, 0.2], [0.8, 0.1], [0.7, 0.3], [0.9, 0.2]], [D.MAXIMIZE, D.MINIMIZE])
    [0, 1, 3]
    """
    losses = [loss_vector(v, directions) for v in vectors]
    # In lexicographic loss order a vector can only be dominated by an earlier one, and (by
    # transitivity) then by an earlier front member: check against the front found so far.
    front: list[int] = []
    for i in sorted(range(len(losses)), key=lambda k: losses[k]):
        if not any(_dominates_loss(losses[j], losses[i]) for j in front):
            front.append(i)
    return sorted(front)


def pareto_ranks(
    vectors: Sequence[Sequence[float | None]], directions: Sequence[StudyDirection]
) -> list[int]:
    """Each vector's non-dominated front, 0 for the Pareto front, 1 for the next, ...

    >>> from optuna.study import StudyDirection as D
    >>> pareto_ranks([[0.9, 0.2], [0.8, 0.1], [0.7, 0.3], [0.6, 0.4]], [D.MAXIMIZE, D.MINIMIZE])
    [0, 0, 1, 2]
    """
    if not len(vectors):
        return []
    losses = np.array([loss_vector(v, directions) for v in vectors], float)
    # dominated_by[i, j]: j dominates i (no worse anywhere, better somewhere)
    le = np.all(losses[None, :, :] <= losses[:, None, :], axis=2)
    lt = np.any(losses[None, :, :] < losses[:, None, :], axis=2)
    dominated_by = le & lt
    ranks = np.full(len(vectors), -1)
    remaining = np.ones(len(vectors), bool)
    front = 0
    while remaining.any():
        current = remaining & ~np.any(dominated_by[:, remaining], axis=1)
        ranks[current] = front
        remaining &= ~current
        front += 1
    return [int(r) for r in ranks]
