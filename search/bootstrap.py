"""Percentile-bootstrap confidence intervals over test rows, for accuracy and conf_sigma.

The rows are resampled with replacement; each resample's statistic is the mean over the
confirmation seeds of that seed's metric on the resampled rows (the teacher's outcomes and
the labels are resampled with the same rows). The interval is the (2.5%, 97.5%)
percentiles of the resampled statistics. Row facts are what
:mod:`distill.held_out` stores: the predicted class and the reference-class probability.

Multi-label rows (labels given as one 0/1 list per row) hold a 0/1 decision and a sigmoid
probability per label; a resample's accuracy is then the exact-match rate and its
conf_sigma the per-label sigma macro-averaged over the labels it defines, as in
:mod:`distill.multilabel_metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    level: float
    resamples: int

    def as_json(self) -> dict[str, float | int]:
        return {
            "low": round(self.low, 6),
            "high": round(self.high, 6),
            "level": self.level,
            "resamples": self.resamples,
        }


def percentile_interval(samples: npt.ArrayLike, level: float = 0.95) -> tuple[float, float] | None:
    """The central ``level`` interval of the finite samples; None when there are none (a
    metric undefined on every resample, e.g. conf_sigma when no row is right for both)."""
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    if not len(s):
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(s, [tail, 100.0 - tail])
    return float(low), float(high)


def _sigma_rows(diff: np.ndarray, both: np.ndarray) -> np.ndarray:
    """Population std of ``diff`` over ``both`` per resample (rows of the 2-D inputs)."""
    n = both.sum(axis=1)
    safe = np.maximum(n, 1)
    mean = (diff * both).sum(axis=1) / safe
    var = (((diff - mean[:, None]) ** 2) * both).sum(axis=1) / safe
    out = np.sqrt(var)
    out[n < 2] = np.nan
    return out


def _macro_sigma_rows(diff: np.ndarray, both: np.ndarray) -> np.ndarray:
    """Per resample, the mean over labels of each label's sigma (3-D inputs: resample x row
    x label), skipping the labels a resample leaves undefined; NaN when it defines none."""
    per_label = np.stack(
        [_sigma_rows(diff[:, :, k], both[:, :, k]) for k in range(diff.shape[2])], axis=1
    )
    defined = np.isfinite(per_label)
    count = defined.sum(axis=1)
    total = np.where(defined, per_label, 0.0).sum(axis=1)
    out: np.ndarray = np.full(len(per_label), np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


def bootstrap_metrics(
    labels: Sequence[int],
    teacher_pred: Sequence[int],
    teacher_p_ref: Sequence[float],
    student_preds: Sequence[Sequence[int]],
    student_p_refs: Sequence[Sequence[float]],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval]:
    """95% intervals of the seed-mean accuracy and conf_sigma over resampled test rows (a
    metric that no resample defines has no interval). 2-D ``labels`` (rows x labels) make
    the rows multi-label: exact match and the macro per-label sigma."""
    y = np.asarray(labels)
    n = len(y)
    if n == 0 or not student_preds:
        raise ValueError("bootstrap_metrics needs test rows and at least one seed")
    t_ok = np.asarray(teacher_pred) == y
    t_ref = np.asarray(teacher_p_ref, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    accs = np.zeros(resamples)
    sigmas = np.zeros(resamples)
    multi = y.ndim == 2
    for pred, p_ref in zip(student_preds, student_p_refs, strict=True):
        s_ok = np.asarray(pred) == y
        diff = t_ref - np.asarray(p_ref, dtype=np.float64)
        if diff.shape != y.shape:
            raise ValueError(f"student rows have shape {diff.shape}, the labels {y.shape}")
        if multi:
            accs += s_ok.all(axis=1)[idx].mean(axis=1)
            sigmas += _macro_sigma_rows(diff[idx], (s_ok & t_ok)[idx])
        else:
            accs += s_ok[idx].mean(axis=1)
            sigmas += _sigma_rows(diff[idx], (s_ok & t_ok)[idx])
    k = len(student_preds)
    out = {}
    for name, stats in (("accuracy", accs / k), ("conf_sigma", sigmas / k)):
        found = percentile_interval(stats, level)
        if found is not None:
            out[name] = Interval(*found, level, resamples)
    return out
