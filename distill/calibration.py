"""Calibration: expected calibration error (ECE), reliability bins and the teacher/student ECE gap.

Inputs follow :mod:`distill.metrics`: ``probs`` of shape (n, C) (softmax outputs) and integer
``labels`` of shape (n,). Bins are equal-width on [0, 1] and right-closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from ._validate import FloatArray, IntArray, _as_labels, _as_probs, _pair

__all__ = ["EceMode", "ReliabilityBins", "ece", "ece_gap", "reliability_bins"]

EceMode = Literal["top_label", "all_classes"]
_ECE_MODES: tuple[str, ...] = ("top_label", "all_classes")


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


def _check_bins(n_bins: int, mode: str) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; got {n_bins!r}")
    if mode not in _ECE_MODES:
        raise ValueError(f"mode must be one of {_ECE_MODES}; got {mode!r}")


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
