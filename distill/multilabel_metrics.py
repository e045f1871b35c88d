"""Metrics of a multi-label teacher/student pair: one sigmoid per label, labels not exclusive.

Inputs: ``teacher_logits`` / ``student_logits`` of shape (n, L) (one logit per label) and
``labels``, an (n, L) 0/1 matrix. A label is predicted when its sigmoid is >= 0.5.

Every statistic is defined per label and macro-averaged over the labels where it is
defined, with the per-label values kept (``per_label``):

- ``exact_match``: share of examples whose whole label set is predicted right (the
  multi-label accuracy); ``f1_macro``: F1 per label, averaged;
- ``conf_sigma``: the paper's statistic per label: over the examples both models get right
  *for that label*, the population std of ``p_teacher(l|x) - p_student(l|x)``; undefined
  for a label with fewer than 2 such examples;
- ``agreement``: per label, the share of examples both models decide alike;
- ``kl_teacher_student``: per label, the mean binary KL(teacher || student);
- ``ece_student`` / ``ece_teacher`` / ``ece_gap``: per label, the binary top-label ECE
  (confidence ``max(p, 1 - p)`` of the side predicted), ``n_bins`` equal-width bins;
- ``conf_mae``: per label, the mean ``|p_teacher(l|x) - p_student(l|x)|`` over all examples;
- ``conf_bias``: per label, over the examples both get right for it, the mean of the
  teacher's minus the student's probability of the true side (positive: the student is
  under-confident);
- ``n_both_correct``: the (example, label) pairs both models get right (sigma's sample).

tests/test_multilabel_metrics.py checks each on hand-computed cases; the metric registry
(:mod:`distill.metric_registry`) reports them under the single-label metrics' names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .calibration import ece

__all__ = [
    "LabelStat",
    "binary_view",
    "check_labels",
    "multilabel_metrics",
    "per_label_conf_sigma",
    "sigmoid",
]

FloatArray = npt.NDArray[np.float64]
_EPS = 1e-12


@dataclass(frozen=True)
class LabelStat:
    """A macro average (None when no label defines it) and the per-label values."""

    macro: float | None
    per_label: list[float | None]


def sigmoid(logits: npt.ArrayLike) -> FloatArray:
    x = np.asarray(logits, dtype=np.float64)
    out: FloatArray = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def binary_view(
    logits: npt.ArrayLike, labels: npt.ArrayLike
) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Every (example, label) pair as a two-class row ``[1 - p, p]`` and its 0/1 label: how
    the single-label plots (reliability, confidence scatter) show a multi-label model."""
    p = sigmoid(logits).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(np.int64)
    return np.stack([1.0 - p, p], axis=1), y


def check_labels(labels: npt.ArrayLike, shape: tuple[int, ...]) -> npt.NDArray[np.bool_]:
    """``labels`` as a boolean (examples x labels) matrix; ValueError unless 0/1 of ``shape``."""
    y = np.asarray(labels)
    if y.shape != shape:
        raise ValueError(f"labels must have shape {shape} (examples x labels), got {y.shape}")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0/1 (one column per label)")
    return y.astype(bool)


def _macro(values: Sequence[float | None]) -> LabelStat:
    defined = [v for v in values if v is not None]
    return LabelStat(float(np.mean(defined)) if defined else None, list(values))


def per_label_conf_sigma(
    teacher_probs: FloatArray, student_probs: FloatArray, y: npt.NDArray[np.bool_]
) -> LabelStat:
    """The paper's sigma per label, over the examples both models get right for it."""
    values: list[float | None] = []
    t_ok = (teacher_probs >= 0.5) == y
    s_ok = (student_probs >= 0.5) == y
    for k in range(y.shape[1]):
        both = t_ok[:, k] & s_ok[:, k]
        if both.sum() < 2:
            values.append(None)
            continue
        diff = teacher_probs[both, k] - student_probs[both, k]
        values.append(float(np.std(diff)))
    return _macro(values)


def _f1(pred: npt.NDArray[np.bool_], y: npt.NDArray[np.bool_]) -> float | None:
    tp = int(np.sum(pred & y))
    fp = int(np.sum(pred & ~y))
    fn = int(np.sum(~pred & y))
    if tp + fp + fn == 0:
        return None  # never true, never predicted: no F1 to speak of
    return 2 * tp / (2 * tp + fp + fn)


def _binary_ece(p: FloatArray, y: npt.NDArray[np.bool_], n_bins: int = 10) -> float:
    """Top-label ECE of one label's decisions (``p >= 0.5`` predicts it): the two sides as
    classes, the predicted side first so that a tie at 0.5 predicts the label."""
    return ece(np.stack([p, 1.0 - p], axis=1), (~y).astype(np.int64), n_bins=n_bins)


def _binary_kl(p: FloatArray, q: FloatArray) -> float:
    p = np.clip(p, _EPS, 1 - _EPS)
    q = np.clip(q, _EPS, 1 - _EPS)
    kl = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
    return max(0.0, float(np.mean(kl)))


def _side(p: FloatArray, y: npt.NDArray[np.bool_]) -> FloatArray:
    """The probability given to the true side of each (example, label)."""
    out: FloatArray = np.where(y, p, 1.0 - p)
    return out


def multilabel_metrics(
    teacher_logits: npt.ArrayLike,
    student_logits: npt.ArrayLike,
    labels: npt.ArrayLike,
    n_bins: int = 10,
) -> dict[str, LabelStat | float]:
    """Every multi-label metric, from held-out logits (see the module docstring)."""
    tl = np.asarray(teacher_logits, dtype=np.float64)
    sl = np.asarray(student_logits, dtype=np.float64)
    if tl.ndim != 2 or tl.shape != sl.shape or tl.shape[0] == 0:
        raise ValueError(
            f"teacher_logits and student_logits must both be (examples x labels), got "
            f"{tl.shape} and {sl.shape}"
        )
    y = check_labels(labels, tl.shape)
    t, s = sigmoid(tl), sigmoid(sl)
    t_pred, s_pred = t >= 0.5, s >= 0.5
    n_labels = y.shape[1]
    ece_t = [_binary_ece(t[:, k], y[:, k], n_bins) for k in range(n_labels)]
    ece_s = [_binary_ece(s[:, k], y[:, k], n_bins) for k in range(n_labels)]
    both = (t_pred == y) & (s_pred == y)
    gap = _side(t, y) - _side(s, y)
    bias = [float(gap[both[:, k], k].mean()) if both[:, k].any() else None for k in range(n_labels)]
    out: dict[str, LabelStat | float] = {
        "exact_match": float(np.mean(np.all(s_pred == y, axis=1))),
        "teacher_exact_match": float(np.mean(np.all(t_pred == y, axis=1))),
        "f1_macro": _macro([_f1(s_pred[:, k], y[:, k]) for k in range(n_labels)]),
        "conf_sigma": per_label_conf_sigma(t, s, y),
        "agreement": _macro(
            [float(np.mean(t_pred[:, k] == s_pred[:, k])) for k in range(n_labels)]
        ),
        "kl_teacher_student": _macro([_binary_kl(t[:, k], s[:, k]) for k in range(n_labels)]),
        "ece_teacher": _macro(ece_t),
        "ece_student": _macro(ece_s),
        "ece_gap": _macro([b - a for a, b in zip(ece_t, ece_s, strict=True)]),
        "conf_mae": _macro([float(np.mean(np.abs(t[:, k] - s[:, k]))) for k in range(n_labels)]),
        "conf_bias": _macro(bias),
        "n_both_correct": float(both.sum()),
    }
    return out
