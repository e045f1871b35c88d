"""Decision flips: how often a student would decide differently from its teacher at the
operating thresholds a team actually uses.

A moderation team acts on one score (a class's softmax probability, or a label's sigmoid
probability) through thresholds: for example auto-remove at or above 0.9, human review at
or above 0.6. An example's *decision* is the band its score falls in (how many thresholds
it reaches). It *flips* when the teacher's score and the student's fall in different bands:
the student would send it elsewhere. Accuracy and conf_sigma can both look fine while many
examples cross a band edge, which is what the team would notice.

Plain numpy, like :mod:`distill.metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["DecisionFlips", "check_thresholds", "decision_flips"]


@dataclass(frozen=True)
class DecisionFlips:
    """``rate``: share of examples whose band differs; ``per_threshold``: for each threshold,
    the share whose teacher and student fall on different sides of it (``score >= t`` is
    the side that acts)."""

    rate: float
    per_threshold: dict[float, float]
    n: int


def check_thresholds(thresholds: Sequence[float], where: str = "thresholds") -> list[float]:
    """Sorted thresholds, each strictly between 0 and 1, no repeats; ValueError otherwise."""
    values = [float(t) for t in thresholds]
    if not values:
        raise ValueError(f"{where}: give at least one threshold, e.g. [0.6, 0.9]")
    bad = [t for t in values if not 0.0 < t < 1.0]
    if bad:
        raise ValueError(f"{where}: thresholds must lie strictly between 0 and 1, got {bad}")
    if len(set(values)) != len(values):
        raise ValueError(f"{where}: a threshold is repeated in {values}")
    return sorted(values)


def _scores(x: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one score per example (1-D), got shape {a.shape}")
    if not np.all(np.isfinite(a)) or np.any((a < 0.0) | (a > 1.0)):
        raise ValueError(f"{name} must be probabilities in [0, 1]")
    return a


def decision_flips(
    teacher_scores: npt.ArrayLike, student_scores: npt.ArrayLike, thresholds: Sequence[float]
) -> DecisionFlips:
    """Decision flips between two models' scores for one class or label.

    >>> flips = decision_flips([0.95, 0.7, 0.2, 0.61], [0.85, 0.72, 0.65, 0.59], [0.6, 0.9])
    >>> flips.rate, flips.per_threshold
    (0.75, {0.6: 0.5, 0.9: 0.25})
    """
    t = _scores(teacher_scores, "teacher_scores")
    s = _scores(student_scores, "student_scores")
    if t.shape != s.shape:
        raise ValueError(f"teacher_scores has {t.shape[0]} examples, student_scores {s.shape[0]}")
    edges = check_thresholds(thresholds)
    if len(t) == 0:
        raise ValueError("decision flips need at least one example")
    band_t = np.searchsorted(edges, t, side="right")
    band_s = np.searchsorted(edges, s, side="right")
    per = {e: float(np.mean((t >= e) != (s >= e))) for e in edges}
    return DecisionFlips(float(np.mean(band_t != band_s)), per, len(t))
