"""The metric registry: each metric's name, direction, worst value, display format,
description and function, defined once.

Everything that names a metric reads it from here: the engine (:func:`confidence_metrics`
computes every registered metric that has a function), the spec validation (which
metrics a study may optimise or constrain, and their natural direction), the objective
(the value an undefined metric scores), the leaderboard and the report (directions,
formats) and ``docs/metrics.md`` (its table is generated from this registry).

Adding a metric is its function plus one :func:`register_metric` line::

    def brier_gap(e: Evaluation) -> float:
        return float(((e.student_probs - e.teacher_probs) ** 2).sum(axis=1).mean())

    register_metric(Metric("brier_gap", "mean squared distance of the probability vectors",
                           "minimize", worst=2.0, compute=brier_gap))

Metrics without a function (``params``, ``latency_ms``, ...) are measured by the engine
itself and only described here.

Multi-label tasks (labels an (n, L) 0/1 matrix, a sigmoid per label) use each metric's
``multi`` function instead: the per-label analogue, macro-averaged (see
:mod:`distill.multilabel_metrics`). A metric without one is undefined (None) there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ._validate import FloatArray, IntArray, _as_labels, _as_matrix, _check_pair
from .calibration import EceMode, _check_bins, ece_gap
from .decision_flips import DecisionFlips, decision_flips
from .metrics import (
    SigmaResult,
    accuracy,
    agreement,
    conf_bias,
    conf_mae,
    conf_sigma,
    conf_spearman,
    f1_macro,
    kl_teacher_student,
    softmax,
    spearman,
)
from .multilabel_metrics import LabelStat, check_labels, multilabel_metrics, sigmoid

__all__ = [
    "Evaluation",
    "Metric",
    "all_metrics",
    "computed_names",
    "confidence_metrics",
    "display_names",
    "evaluation",
    "format_value",
    "get_metric",
    "objective_metrics",
    "per_label_metrics",
    "register_metric",
    "worst_value",
]

Direction = Literal["maximize", "minimize"]
Value = float | int | bool | None


@dataclass(frozen=True)
class Evaluation:
    """A teacher/student pair's held-out logits, the labels and the metric options; the
    arrays several metrics share (probabilities, sigma, ECE) are computed once."""

    teacher_logits: FloatArray
    student_logits: FloatArray
    labels: IntArray
    reference_class: int = 0
    ece_bins: int = 10
    ece_mode: EceMode = "top_label"
    decision_class: int | None = None  # None: the last class
    decision_thresholds: tuple[float, ...] = (0.6, 0.9)
    multi_label: bool = False  # labels: an (n, L) 0/1 matrix, a sigmoid per label

    @cached_property
    def teacher_probs(self) -> FloatArray:
        """Softmax probabilities, or each label's sigmoid when multi-label."""
        return sigmoid(self.teacher_logits) if self.multi_label else softmax(self.teacher_logits)

    @cached_property
    def student_probs(self) -> FloatArray:
        return sigmoid(self.student_logits) if self.multi_label else softmax(self.student_logits)

    @cached_property
    def multi(self) -> dict[str, LabelStat | float]:
        """The multi-label metrics, per label and macro-averaged."""
        return multilabel_metrics(
            self.teacher_logits, self.student_logits, self.labels, self.ece_bins
        )

    def macro(self, name: str) -> float | None:
        """A multi-label metric's macro average."""
        stat = self.multi[name]
        return stat.macro if isinstance(stat, LabelStat) else float(stat)

    @cached_property
    def sigma(self) -> SigmaResult:
        return conf_sigma(self.teacher_probs, self.student_probs, self.labels, self.reference_class)

    @cached_property
    def flips(self) -> DecisionFlips:
        """Decision flips on ``decision_class``'s probability at the operating thresholds."""
        n_classes = self.teacher_probs.shape[1]
        c = n_classes - 1 if self.decision_class is None else self.decision_class
        if not 0 <= c < n_classes:
            kind = "labels" if self.multi_label else "classes"
            raise ValueError(
                f"metrics.decision_class is {c} but the data has {n_classes} {kind} (0..."
                f"{n_classes - 1})"
            )
        return decision_flips(
            self.teacher_probs[:, c], self.student_probs[:, c], self.decision_thresholds
        )

    @cached_property
    def ece(self) -> tuple[float, float, float]:
        """(teacher ECE, student ECE, student - teacher)."""
        return ece_gap(
            self.teacher_probs,
            self.student_probs,
            self.labels,
            n_bins=self.ece_bins,
            mode=self.ece_mode,
        )


@dataclass(frozen=True)
class Metric:
    """One metric. ``direction`` None: recorded and shown, but not something a study may
    optimise or constrain. ``worst``: what an undefined value scores as an objective (so the
    sampler steers away from it); required with a direction. ``fmt``: a format spec for
    display. ``compute`` None: the engine measures it (student size, latency)."""

    name: str
    description: str
    direction: Direction | None = None
    worst: float | None = None
    fmt: str = ".4f"
    compute: Callable[[Evaluation], Value] | None = None
    shown: bool = True
    multi: Callable[[Evaluation], Value] | None = None  # its multi-label analogue

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"metric name {self.name!r} must be an identifier")
        if self.direction is not None and self.worst is None:
            raise ValueError(f"metric {self.name!r}: a direction needs a worst value")


_METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    """Add ``metric``; registering the same name twice is an error (pick another name)."""
    if metric.name in _METRICS:
        raise ValueError(f"a metric named {metric.name!r} is already registered")
    _METRICS[metric.name] = metric
    return metric


def unregister_metric(name: str) -> None:
    """Remove a metric (a plug-in's tests clean up after themselves)."""
    _METRICS.pop(name, None)


def get_metric(name: str) -> Metric:
    try:
        return _METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}: use one of {', '.join(_METRICS)}") from None


def all_metrics() -> list[Metric]:
    """Every metric, in registration order (the order they are shown in)."""
    return list(_METRICS.values())


def objective_metrics() -> dict[str, Direction]:
    """The metrics a study may optimise or constrain, each with its natural direction."""
    return {m.name: m.direction for m in _METRICS.values() if m.direction is not None}


def computed_names() -> tuple[str, ...]:
    """The keys :func:`confidence_metrics` returns."""
    return tuple(m.name for m in _METRICS.values() if m.compute is not None)


def display_names() -> tuple[str, ...]:
    """What a person is shown (CLI summary, the report), in this order."""
    return tuple(m.name for m in _METRICS.values() if m.shown)


def worst_value(name: str) -> float:
    worst = get_metric(name).worst
    if worst is None:
        raise ValueError(f"metric {name!r} is not an objective (it has no worst value)")
    return worst


def format_value(name: str, value: Value) -> str:
    """``value`` as the metric is displayed; ``-`` when undefined."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    metric = _METRICS.get(name)
    spec = metric.fmt if metric is not None else ".4g"
    return format(value, spec) if isinstance(value, int | float) else str(value)


def confidence_metrics(
    teacher_logits: npt.ArrayLike,
    student_logits: npt.ArrayLike,
    labels: npt.ArrayLike,
    **options: Any,
) -> dict[str, Value]:
    """Every registered metric that has a function, from held-out logits.

    Keys are :func:`computed_names`; values are plain Python scalars or ``None`` (JSON-safe).
    ``labels`` of shape (n, L) with 0/1 entries make it a multi-label evaluation.
    ``options``: those of :func:`evaluation` (``MetricsConfig.options()`` gives them).
    """
    e = evaluation(teacher_logits, student_logits, labels, **options)
    out: dict[str, Value] = {}
    for m in _METRICS.values():
        if m.compute is not None:
            fn = (m.multi if e.multi_label else m.compute) or (lambda _: None)
            value = fn(e)
            out[m.name] = value.item() if isinstance(value, np.generic) else value
    return out


def evaluation(
    teacher_logits: npt.ArrayLike,
    student_logits: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    reference_class: int = 0,
    ece_bins: int = 10,
    ece_mode: EceMode = "top_label",
    decision_class: int | None = None,
    decision_thresholds: Sequence[float] = (0.6, 0.9),
) -> Evaluation:
    """The checked inputs of :func:`confidence_metrics` (2-D labels: multi-label)."""
    multi_label = np.ndim(labels) == 2
    tl = _as_matrix(teacher_logits, "teacher_logits", 1 if multi_label else 2)
    sl = _as_matrix(student_logits, "student_logits", 1 if multi_label else 2)
    _check_pair(tl, sl, "teacher_logits", "student_logits")
    _check_bins(ece_bins, ece_mode)
    if multi_label:
        y = check_labels(labels, tl.shape).astype(np.int64)
    else:
        y = _as_labels(labels, tl.shape[0], tl.shape[1])
    return Evaluation(
        tl,
        sl,
        y,
        reference_class,
        ece_bins,
        ece_mode,
        decision_class,
        tuple(decision_thresholds),
        multi_label,
    )


def per_label_metrics(e: Evaluation, label_names: Sequence[str]) -> dict[str, dict[str, Value]]:
    """A multi-label evaluation's per-label values, by label name then metric name."""
    out: dict[str, dict[str, Value]] = {str(n): {} for n in label_names}
    for name, stat in e.multi.items():
        if isinstance(stat, LabelStat):
            for label, value in zip(label_names, stat.per_label, strict=True):
                out[str(label)][name] = value
    return out


def _flat_spearman(e: Evaluation) -> float | None:
    """Multi-label: Spearman correlation of the two models' per-label probabilities, every
    (example, label) pair pooled."""
    return spearman(e.teacher_probs.ravel(), e.student_probs.ravel())


# --------------------------------------------------------------------------- the built-ins
# (docs/metrics.md explains each one in prose, with a worked example of conf_sigma)

for _metric in (
    Metric(
        "accuracy",
        "share of held-out examples the student classifies correctly",
        "maximize",
        worst=0.0,
        compute=lambda e: accuracy(e.labels, e.student_probs),
        multi=lambda e: e.macro("exact_match"),
    ),
    Metric(
        "f1_macro",
        "macro-averaged F1 of the student's predictions",
        "maximize",
        worst=0.0,
        compute=lambda e: f1_macro(e.labels, e.student_probs),
        multi=lambda e: e.macro("f1_macro"),
    ),
    Metric(
        "teacher_accuracy",
        "the teacher's accuracy on the same examples (context, not a target)",
        compute=lambda e: accuracy(e.labels, e.teacher_probs),
        multi=lambda e: e.macro("teacher_exact_match"),
    ),
    Metric(
        "agreement",
        "share of examples where student and teacher predict the same class",
        "maximize",
        worst=0.0,
        compute=lambda e: agreement(e.teacher_probs, e.student_probs),
        multi=lambda e: e.macro("agreement"),
    ),
    Metric(
        "conf_sigma",
        "the paper's sigma: population std of p_teacher(r|x) - p_student(r|x) over the "
        "examples both classify correctly (r: the reference class); undefined below 2 such",
        "minimize",
        worst=1.0,
        compute=lambda e: e.sigma.value,
        multi=lambda e: e.macro("conf_sigma"),
    ),
    Metric(
        "conf_sigma_defined",
        "whether conf_sigma is defined (at least 2 examples both models get right)",
        fmt="",
        compute=lambda e: e.sigma.defined,
        shown=False,
        multi=lambda e: e.macro("conf_sigma") is not None,
    ),
    Metric(
        "n_both_correct",
        "how many examples both models classify correctly (conf_sigma's sample)",
        fmt="d",
        compute=lambda e: e.sigma.n_both_correct,
        multi=lambda e: int(e.macro("n_both_correct") or 0),
    ),
    Metric(
        "decision_flip_rate",
        "share of examples whose decision band differs between teacher and student: the "
        "decision class's probability against the operating thresholds "
        "(metrics.decision_thresholds, e.g. review at 0.6, remove at 0.9)",
        "minimize",
        worst=1.0,
        compute=lambda e: e.flips.rate,
        multi=lambda e: e.flips.rate,
    ),
    Metric(
        "conf_mae",
        "mean absolute difference of the two models' top-class confidences",
        "minimize",
        worst=1.0,
        compute=lambda e: conf_mae(e.teacher_probs, e.student_probs),
        multi=lambda e: e.macro("conf_mae"),
    ),
    Metric(
        "conf_bias",
        "mean of p_teacher(y|x) - p_student(y|x) over both-correct examples; positive: the "
        "student is under-confident (signed: constrain it on both sides rather than minimise)",
        "minimize",
        worst=1.0,
        compute=lambda e: conf_bias(e.teacher_probs, e.student_probs, e.labels),
        multi=lambda e: e.macro("conf_bias"),
    ),
    Metric(
        "kl_teacher_student",
        "mean KL(teacher || student) of the softmax outputs at temperature 1",
        "minimize",
        worst=1e6,
        compute=lambda e: kl_teacher_student(e.teacher_logits, e.student_logits),
        multi=lambda e: e.macro("kl_teacher_student"),
    ),
    Metric(
        "ece_teacher",
        "the teacher's expected calibration error (context, not a target)",
        compute=lambda e: e.ece[0],
        multi=lambda e: e.macro("ece_teacher"),
    ),
    Metric(
        "ece_student",
        "the student's expected calibration error",
        "minimize",
        worst=1.0,
        compute=lambda e: e.ece[1],
        multi=lambda e: e.macro("ece_student"),
    ),
    Metric(
        "ece_gap",
        "the student's ECE minus the teacher's",
        "minimize",
        worst=1.0,
        compute=lambda e: e.ece[2],
        multi=lambda e: e.macro("ece_gap"),
    ),
    Metric(
        "conf_spearman",
        "Spearman rank correlation of the two models' top-class confidences",
        "maximize",
        worst=-1.0,
        compute=lambda e: conf_spearman(e.teacher_probs, e.student_probs),
        multi=lambda e: _flat_spearman(e),
    ),
    Metric("params", "the student's parameter count", "minimize", worst=1e12, fmt=",d"),
    Metric(
        "latency_ms",
        "the student's inference latency per example, in milliseconds",
        "minimize",
        worst=1e9,
        fmt=".3f",
    ),
    Metric(
        "speedup_vs_teacher",
        "the teacher's latency over the student's, measured the same way in the same process",
        "maximize",
        worst=0.0,
        fmt=".2f",
    ),
    Metric(
        "mean_exit_layer",
        "early-exit students: the mean layer at which examples leave",
        fmt=".2f",
    ),
):
    register_metric(_metric)
