"""Accuracy and confidence-preservation metrics for a teacher/student pair.

Everything here is plain numpy, computed on held-out predictions:

- ``teacher_probs`` / ``student_probs``: softmax probabilities at temperature 1, shape (n, C);
- ``teacher_logits`` / ``student_logits``: raw logits, shape (n, C);
- ``labels``: integer class ids, shape (n,), each in ``[0, C)``.

The paper's statistic (Vengertsev & Sherman, arXiv:2401.11365) is :func:`conf_sigma`: over the
examples that BOTH models classify correctly, the population standard deviation of
``p_teacher(r|x) - p_student(r|x)`` for a fixed reference class ``r`` (docs/metrics.md works
an example by hand).

All scalar results are plain Python values (``float``/``int``/``bool``/``None``), never numpy
scalars and never NaN, so they can go straight into JSON or an Optuna user attribute.
Calibration (ECE, reliability bins) lives in :mod:`distill.calibration` and is re-exported
here. Each metric's name, direction and description, and the function that computes all of
them from logits (``confidence_metrics``), are in :mod:`distill.metric_registry`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ._validate import (
    FloatArray,
    IntArray,
    _as_labels,
    _as_matrix,
    _as_probs,
    _check_pair,
    _pair,
)
from .calibration import (
    EceMode,
    ReliabilityBins,
    ece,
    ece_gap,
    reliability_bins,
)

__all__ = [
    "TEST_PREFIX",
    "EceMode",
    "ReliabilityBins",
    "SigmaResult",
    "accuracy",
    "agreement",
    "conf_bias",
    "conf_mae",
    "conf_sigma",
    "conf_spearman",
    "ece",
    "ece_gap",
    "f1_macro",
    "kl_teacher_student",
    "log_softmax",
    "reliability_bins",
    "softmax",
    "spearman",
]


# Metrics measured on the held-out test split carry this prefix (``test:accuracy``).
TEST_PREFIX = "test:"


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SigmaResult:
    """The paper's sigma and how many examples it was computed on.

    ``value`` is ``None`` (and ``defined`` is ``False``) when fewer than two examples are
    classified correctly by both teacher and student: a deviation is meaningless there.
    """

    value: float | None
    n_both_correct: int
    defined: bool


def _both_correct(t: FloatArray, s: FloatArray, y: IntArray) -> npt.NDArray[np.bool_]:
    return (t.argmax(axis=1) == y) & (s.argmax(axis=1) == y)


# --------------------------------------------------------------------------- softmax


def log_softmax(logits: npt.ArrayLike) -> FloatArray:
    """Numerically stable log-softmax over the last axis, in float64."""
    x = np.asarray(logits, dtype=np.float64)
    shifted = x - np.max(x, axis=-1, keepdims=True)
    out: FloatArray = shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
    return out


def softmax(logits: np.ndarray) -> FloatArray:
    """Numerically stable softmax over the last axis, in float64."""
    x = np.asarray(logits, dtype=np.float64)
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    out: FloatArray = e / np.sum(e, axis=-1, keepdims=True)
    return out


# --------------------------------------------------------------------------- quality


def accuracy(labels: npt.ArrayLike, student_probs: npt.ArrayLike) -> float:
    """Share of examples whose argmax equals the label."""
    p = _as_probs(student_probs, "student_probs")
    y = _as_labels(labels, p.shape[0], p.shape[1])
    return float(np.mean(p.argmax(axis=1) == y))


def f1_macro(labels: npt.ArrayLike, probs: npt.ArrayLike, num_classes: int | None = None) -> float:
    """Macro-averaged F1 of ``argmax(probs)`` against ``labels``.

    Averaged over the classes that occur in the labels or the predictions (sklearn's default);
    a class that is neither true nor predicted anywhere is skipped. A 0/0 precision or recall
    counts as 0. ``num_classes``, when given, must equal the number of columns of ``probs``.
    """
    p = _as_probs(probs, "probs")
    if num_classes is not None and num_classes != p.shape[1]:
        raise ValueError(f"num_classes={num_classes} but probs has {p.shape[1]} columns")
    c = p.shape[1]
    y = _as_labels(labels, p.shape[0], c)
    pred = p.argmax(axis=1)
    true_count = np.bincount(y, minlength=c)
    pred_count = np.bincount(pred, minlength=c)
    tp = np.bincount(y[pred == y], minlength=c)
    scores: list[float] = []
    for k in range(c):
        if true_count[k] == 0 and pred_count[k] == 0:
            continue
        prec = tp[k] / pred_count[k] if pred_count[k] else 0.0
        rec = tp[k] / true_count[k] if true_count[k] else 0.0
        scores.append(float(2 * prec * rec / (prec + rec)) if prec + rec > 0 else 0.0)
    return float(np.mean(scores))


def agreement(teacher_probs: npt.ArrayLike, student_probs: npt.ArrayLike) -> float:
    """Share of examples where teacher and student predict the same class."""
    t, s = _pair(teacher_probs, student_probs)
    return float(np.mean(t.argmax(axis=1) == s.argmax(axis=1)))


# --------------------------------------------------------------------------- confidence


def conf_sigma(
    teacher_probs: npt.ArrayLike,
    student_probs: npt.ArrayLike,
    labels: npt.ArrayLike,
    reference_class: int = 0,
) -> SigmaResult:
    """The paper's sigma: population std of ``p_t(r|x) - p_s(r|x)`` over both-correct examples.

    ``r`` is the fixed ``reference_class`` (label id 0 in the paper). With two classes the
    choice of ``r`` does not matter. Undefined (``value=None``) with fewer than 2 both-correct
    examples.
    """
    t, s = _pair(teacher_probs, student_probs)
    c = t.shape[1]
    if isinstance(reference_class, bool) or not 0 <= int(reference_class) < c:
        raise ValueError(f"reference_class must be in [0, {c}); got {reference_class}")
    y = _as_labels(labels, t.shape[0], c)
    mask = _both_correct(t, s, y)
    n_both = int(mask.sum())
    if n_both < 2:
        return SigmaResult(value=None, n_both_correct=n_both, defined=False)
    r = int(reference_class)
    diff = t[mask, r] - s[mask, r]
    return SigmaResult(value=float(np.std(diff)), n_both_correct=n_both, defined=True)


def conf_mae(teacher_probs: npt.ArrayLike, student_probs: npt.ArrayLike) -> float:
    """Mean absolute difference of the max-softmax confidences, over all examples."""
    t, s = _pair(teacher_probs, student_probs)
    return float(np.mean(np.abs(t.max(axis=1) - s.max(axis=1))))


def conf_bias(
    teacher_probs: npt.ArrayLike, student_probs: npt.ArrayLike, labels: npt.ArrayLike
) -> float | None:
    """Mean of ``p_t(y|x) - p_s(y|x)`` over both-correct examples, ``y`` the true class.

    Positive means the student is under-confident relative to the teacher. ``None`` when no
    example is classified correctly by both.
    """
    t, s = _pair(teacher_probs, student_probs)
    y = _as_labels(labels, t.shape[0], t.shape[1])
    mask = _both_correct(t, s, y)
    if not mask.any():
        return None
    idx = np.arange(t.shape[0])[mask]
    return float(np.mean(t[idx, y[idx]] - s[idx, y[idx]]))


def kl_teacher_student(teacher_logits: npt.ArrayLike, student_logits: npt.ArrayLike) -> float:
    """Mean over examples of KL(softmax(teacher) || softmax(student)) at temperature 1."""
    tl = _as_matrix(teacher_logits, "teacher_logits")
    sl = _as_matrix(student_logits, "student_logits")
    _check_pair(tl, sl, "teacher_logits", "student_logits")
    log_p = log_softmax(tl)
    log_q = log_softmax(sl)
    per_example = np.sum(np.exp(log_p) * (log_p - log_q), axis=1)
    return max(0.0, float(np.mean(per_example)))


def _average_ranks(x: FloatArray) -> FloatArray:
    """1-based ranks, ties given the mean of the ranks they span."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts).astype(np.float64)
    ranks: FloatArray = (upper - (counts - 1) / 2.0)[inverse.reshape(-1)]
    return ranks


def conf_spearman(teacher_probs: npt.ArrayLike, student_probs: npt.ArrayLike) -> float | None:
    """Spearman correlation of teacher and student max-softmax confidences.

    Average ranks for ties, Pearson correlation of the ranks. ``None`` when there are fewer
    than 2 examples or either side's confidences are all equal.
    """
    t, s = _pair(teacher_probs, student_probs)
    return spearman(t.max(axis=1), s.max(axis=1))


def spearman(x: FloatArray, y: FloatArray) -> float | None:
    """Spearman rank correlation of two equal-length vectors (average ranks for ties);
    ``None`` below 2 values or when either side is constant."""
    if x.shape[0] < 2:
        return None
    rt = _average_ranks(x)
    rs = _average_ranks(y)
    dt = rt - rt.mean()
    ds = rs - rs.mean()
    denom = math.sqrt(float(np.sum(dt * dt)) * float(np.sum(ds * ds)))
    if denom == 0.0:
        return None
    return float(min(1.0, max(-1.0, float(np.sum(dt * ds)) / denom)))
