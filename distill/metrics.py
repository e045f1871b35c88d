"""Accuracy and confidence-preservation metrics for a teacher/student pair.

Everything here is plain numpy, computed on held-out predictions:

- ``teacher_probs`` / ``student_probs``: softmax probabilities at temperature 1, shape (n, C);
- ``teacher_logits`` / ``student_logits``: raw logits, shape (n, C);
- ``labels``: integer class ids, shape (n,), each in ``[0, C)``.

The paper's statistic (Vengertsev & Sherman, arXiv:2401.11365) is :func:`conf_sigma`: over the
examples that BOTH models classify correctly, the population standard deviation of
``p_teacher(r|x) - p_student(r|x)`` for a fixed reference class ``r`` (see DESIGN.md).

All scalar results are plain Python values (``float``/``int``/``bool``/``None``), never numpy
scalars and never NaN, so they can go straight into JSON or an Optuna user attribute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "METRIC_KEYS",
    "EceMode",
    "ReliabilityBins",
    "SigmaResult",
    "accuracy",
    "agreement",
    "conf_bias",
    "conf_mae",
    "conf_sigma",
    "conf_spearman",
    "confidence_metrics",
    "ece",
    "ece_gap",
    "f1_macro",
    "kl_teacher_student",
    "log_softmax",
    "reliability_bins",
    "softmax",
]

EceMode = Literal["top_label", "all_classes"]
_ECE_MODES: tuple[str, ...] = ("top_label", "all_classes")

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


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


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin statistics of a reliability diagram (equal-width bins on [0, 1]).

    ``edges`` has ``n_bins + 1`` entries; bin ``i`` covers ``(edges[i], edges[i+1]]`` (the first
    bin also holds 0). ``confidence`` and ``accuracy`` are NaN for empty bins; ``counts`` are
    the number of samples per bin (examples in ``top_label`` mode, example-class pairs in
    ``all_classes`` mode).
    """

    edges: FloatArray
    confidence: FloatArray
    accuracy: FloatArray
    counts: IntArray
    mode: str = "top_label"

    @property
    def n_samples(self) -> int:
        return int(self.counts.sum())


# --------------------------------------------------------------------------- validation


def _as_matrix(x: npt.ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (n, C); got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 examples); metrics need at least one example")
    if arr.shape[1] < 2:
        raise ValueError(f"{name} must have at least 2 classes (columns); got {arr.shape[1]}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _as_probs(x: npt.ArrayLike, name: str) -> FloatArray:
    arr = _as_matrix(x, name)
    if np.any(arr < -1e-6) or np.any(arr > 1 + 1e-6):
        raise ValueError(
            f"{name} must hold probabilities in [0, 1] (pass softmax outputs, not logits)"
        )
    return arr


def _as_labels(labels: npt.ArrayLike, n: int, num_classes: int) -> IntArray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"labels must be a 1-D array of shape (n,); got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"labels has {arr.shape[0]} entries but the predictions have {n} rows")
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"labels must be integer class ids; got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
        raise ValueError("labels must be integer class ids; got non-integral values")
    out = arr.astype(np.int64)
    if out.size and (out.min() < 0 or out.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}); got values from {out.min()} to {out.max()}"
        )
    return out


def _check_pair(
    teacher: FloatArray, student: FloatArray, t_name: str = "teacher", s_name: str = "student"
) -> None:
    if teacher.shape[0] != student.shape[0]:
        raise ValueError(
            f"{t_name} has {teacher.shape[0]} examples but {s_name} has {student.shape[0]}"
        )
    if teacher.shape[1] != student.shape[1]:
        raise ValueError(
            f"{t_name} has {teacher.shape[1]} classes but {s_name} has {student.shape[1]}"
        )


def _pair(
    teacher_probs: npt.ArrayLike, student_probs: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    t = _as_probs(teacher_probs, "teacher_probs")
    s = _as_probs(student_probs, "student_probs")
    _check_pair(t, s, "teacher_probs", "student_probs")
    return t, s


def _check_bins(n_bins: int, mode: str) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; got {n_bins!r}")
    if mode not in _ECE_MODES:
        raise ValueError(f"mode must be one of {_ECE_MODES}; got {mode!r}")


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


def _samples(probs: FloatArray, y: IntArray, mode: str) -> tuple[FloatArray, FloatArray]:
    """(confidence, correctness) samples that ECE bins."""
    if mode == "top_label":
        conf = probs.max(axis=1)
        correct = (probs.argmax(axis=1) == y).astype(np.float64)
    else:
        conf = probs.reshape(-1)
        onehot = np.zeros_like(probs)
        onehot[np.arange(probs.shape[0]), y] = 1.0
        correct = onehot.reshape(-1)
    return conf, correct


def reliability_bins(
    probs: npt.ArrayLike,
    labels: npt.ArrayLike,
    n_bins: int = 10,
    mode: EceMode = "top_label",
) -> ReliabilityBins:
    """Equal-width bin statistics: bin ``i`` covers ``(i/n, (i+1)/n]``; 0 goes to bin 0."""
    _check_bins(n_bins, mode)
    p = _as_probs(probs, "probs")
    y = _as_labels(labels, p.shape[0], p.shape[1])
    conf, correct = _samples(p, y, mode)
    # i/n computed directly, so an edge equals the float a user writes (0.3, 0.7, ...).
    edges = np.arange(n_bins + 1, dtype=np.float64) / n_bins
    # side="left": the smallest i with conf <= edges[i]; the bin is i - 1 (right-closed bins).
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins).astype(np.int64)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    corr_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    nonempty = counts > 0
    mean_conf = np.full(n_bins, np.nan)
    mean_acc = np.full(n_bins, np.nan)
    mean_conf[nonempty] = conf_sum[nonempty] / counts[nonempty]
    mean_acc[nonempty] = corr_sum[nonempty] / counts[nonempty]
    return ReliabilityBins(
        edges=edges, confidence=mean_conf, accuracy=mean_acc, counts=counts, mode=mode
    )


def _ece_from_bins(bins: ReliabilityBins) -> float:
    nonempty = bins.counts > 0
    total = bins.n_samples
    gaps = np.abs(bins.accuracy[nonempty] - bins.confidence[nonempty])
    return float(np.sum(bins.counts[nonempty] / total * gaps))


def ece(
    probs: npt.ArrayLike,
    labels: npt.ArrayLike,
    n_bins: int = 10,
    mode: EceMode = "top_label",
) -> float:
    """Expected calibration error with equal-width bins on [0, 1].

    ``top_label``: one (max probability, argmax == label) sample per example.
    ``all_classes`` (the paper's variant): every class probability of every example is one
    sample, correct when that class is the true class; N = n * C.
    """
    return _ece_from_bins(reliability_bins(probs, labels, n_bins=n_bins, mode=mode))


def ece_gap(
    teacher_probs: npt.ArrayLike,
    student_probs: npt.ArrayLike,
    labels: npt.ArrayLike,
    n_bins: int = 10,
    mode: EceMode = "top_label",
) -> tuple[float, float, float]:
    """(ece_teacher, ece_student, |ece_teacher - ece_student|)."""
    t, s = _pair(teacher_probs, student_probs)
    e_t = ece(t, labels, n_bins=n_bins, mode=mode)
    e_s = ece(s, labels, n_bins=n_bins, mode=mode)
    return e_t, e_s, abs(e_t - e_s)


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
    if t.shape[0] < 2:
        return None
    rt = _average_ranks(t.max(axis=1))
    rs = _average_ranks(s.max(axis=1))
    dt = rt - rt.mean()
    ds = rs - rs.mean()
    denom = math.sqrt(float(np.sum(dt * dt)) * float(np.sum(ds * ds)))
    if denom == 0.0:
        return None
    return float(min(1.0, max(-1.0, float(np.sum(dt * ds)) / denom)))


# --------------------------------------------------------------------------- all at once

METRIC_KEYS: tuple[str, ...] = (
    "accuracy",
    "f1_macro",
    "teacher_accuracy",
    "agreement",
    "conf_sigma",
    "conf_sigma_defined",
    "n_both_correct",
    "conf_mae",
    "conf_bias",
    "kl_teacher_student",
    "ece_teacher",
    "ece_student",
    "ece_gap",
    "conf_spearman",
)


def confidence_metrics(
    teacher_logits: npt.ArrayLike,
    student_logits: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    reference_class: int = 0,
    ece_bins: int = 10,
    ece_mode: EceMode = "top_label",
) -> dict[str, float | int | bool | None]:
    """Every metric of the table in DESIGN.md (but params/latency) from held-out logits.

    Keys are :data:`METRIC_KEYS`; values are plain Python scalars or ``None`` (JSON-safe).
    """
    tl = _as_matrix(teacher_logits, "teacher_logits")
    sl = _as_matrix(student_logits, "student_logits")
    _check_pair(tl, sl, "teacher_logits", "student_logits")
    _check_bins(ece_bins, ece_mode)
    y = _as_labels(labels, tl.shape[0], tl.shape[1])
    t = softmax(tl)
    s = softmax(sl)
    sigma = conf_sigma(t, s, y, reference_class=reference_class)
    e_t, e_s, gap = ece_gap(t, s, y, n_bins=ece_bins, mode=ece_mode)
    return {
        "accuracy": accuracy(y, s),
        "f1_macro": f1_macro(y, s),
        "teacher_accuracy": accuracy(y, t),
        "agreement": agreement(t, s),
        "conf_sigma": sigma.value,
        "conf_sigma_defined": sigma.defined,
        "n_both_correct": sigma.n_both_correct,
        "conf_mae": conf_mae(t, s),
        "conf_bias": conf_bias(t, s, y),
        "kl_teacher_student": kl_teacher_student(tl, sl),
        "ece_teacher": e_t,
        "ece_student": e_s,
        "ece_gap": gap,
        "conf_spearman": conf_spearman(t, s),
    }
