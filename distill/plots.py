"""Per-trial pictures: a reliability diagram and a teacher/student confidence scatter.

Uses matplotlib's object API with the Agg canvas directly (no pyplot, no global state), so it
is safe in worker processes and threads without a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kdsearch.distill._validate import _as_labels, _pair
from kdsearch.distill.calibration import EceMode, ece, reliability_bins
from kdsearch.distill.metrics import conf_sigma

__all__ = ["confidence_scatter", "reliability_diagram", "speed_sweep_plot"]

_TEACHER_COLOR = "#1f77b4"
_STUDENT_COLOR = "#ff7f0e"
_DPI = 100
_SIZE_IN = (6.4, 6.4)


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out, format="png", dpi=_DPI)
    fig.clear()
    return out


def reliability_diagram(
    teacher_probs: npt.ArrayLike,
    student_probs: npt.ArrayLike,
    labels: npt.ArrayLike,
    path: str | Path,
    *,
    n_bins: int = 10,
    mode: EceMode = "top_label",
    title: str | None = None,
) -> Path:
    """Teacher and student reliability curves on one figure, with a confidence histogram.

    Top panel: per-bin accuracy as side-by-side bars (teacher left, student right half of each
    bin), mean confidence vs accuracy as markers, the diagonal, and each model's ECE in the
    legend. Bottom panel: sample counts per bin. Empty bins are simply not drawn.
    Writes a PNG to ``path`` and returns it as a :class:`~pathlib.Path`.
    """
    t, s = _pair(teacher_probs, student_probs)
    y = _as_labels(labels, t.shape[0], t.shape[1])
    bins_t = reliability_bins(t, y, n_bins=n_bins, mode=mode)
    bins_s = reliability_bins(s, y, n_bins=n_bins, mode=mode)
    ece_t = ece(t, y, n_bins=n_bins, mode=mode)
    ece_s = ece(s, y, n_bins=n_bins, mode=mode)

    edges = bins_t.edges
    width = 1.0 / n_bins
    left = edges[:-1]

    fig = Figure(figsize=_SIZE_IN, dpi=_DPI, layout="constrained")
    ax, ax_hist = fig.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]}, squeeze=True
    )

    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    for bins, name, color, offset, e in (
        (bins_t, "teacher", _TEACHER_COLOR, 0.0, ece_t),
        (bins_s, "student", _STUDENT_COLOR, 0.5, ece_s),
    ):
        nonempty = bins.counts > 0
        ax.bar(
            left[nonempty] + offset * width,
            bins.accuracy[nonempty],
            width=width / 2,
            align="edge",
            color=color,
            alpha=0.35,
            edgecolor=color,
        )
        ax.plot(
            bins.confidence[nonempty],
            bins.accuracy[nonempty],
            marker="o",
            color=color,
            linewidth=1.5,
            label=f"{name} (ECE = {e:.3f})",
        )
        ax_hist.bar(
            left + offset * width,
            bins.counts,
            width=width / 2,
            align="edge",
            color=color,
            alpha=0.7,
            label=name,
        )

    top_label = mode == "top_label"
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel("accuracy" if top_label else "observed frequency")
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(True, alpha=0.3)
    n_classes = t.shape[1]
    default_title = (
        f"Reliability diagram ({'top-label' if top_label else 'all classes'}, "
        f"{n_bins} bins, n = {t.shape[0]}, C = {n_classes})"
    )
    ax.set_title(title if title is not None else default_title, fontsize="medium")

    ax_hist.set_xlabel("confidence (max probability)" if top_label else "predicted probability")
    ax_hist.set_ylabel("count")
    ax_hist.set_xticks(edges if n_bins <= 20 else np.linspace(0.0, 1.0, 11))
    ax_hist.tick_params(axis="x", labelrotation=45 if n_bins > 10 else 0)
    ax_hist.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def confidence_scatter(
    teacher_probs: npt.ArrayLike,
    student_probs: npt.ArrayLike,
    labels: npt.ArrayLike,
    path: str | Path,
    *,
    reference_class: int = 0,
    title: str | None = None,
) -> Path:
    """Scatter of teacher vs student probability of the reference class, one dot per example.

    Dots are coloured by who is correct (both / teacher only / student only / neither); the
    paper's sigma (computed on the "both" dots) is in the title. Writes a PNG, returns its path.
    """
    t, s = _pair(teacher_probs, student_probs)
    y = _as_labels(labels, t.shape[0], t.shape[1])
    sigma = conf_sigma(t, s, y, reference_class=reference_class)
    r = int(reference_class)
    t_ok = t.argmax(axis=1) == y
    s_ok = s.argmax(axis=1) == y
    x_vals = t[:, r]
    y_vals = s[:, r]

    fig = Figure(figsize=_SIZE_IN, dpi=_DPI, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="student = teacher")
    groups = (
        (t_ok & s_ok, "both correct", "#2ca02c", "o"),
        (t_ok & ~s_ok, "teacher only correct", "#ff7f0e", "^"),
        (~t_ok & s_ok, "student only correct", "#9467bd", "v"),
        (~t_ok & ~s_ok, "both wrong", "#d62728", "x"),
    )
    for mask, name, color, marker in groups:
        count = int(mask.sum())
        if count == 0:
            continue
        ax.scatter(
            x_vals[mask],
            y_vals[mask],
            s=14,
            c=color,
            marker=marker,
            alpha=0.7,
            label=f"{name} ({count})",
        )
    if sigma.value is not None:
        sigma_text = f"conf_sigma = {sigma.value:.4f} (n both correct = {sigma.n_both_correct})"
    else:
        sigma_text = f"conf_sigma undefined (n both correct = {sigma.n_both_correct} < 2)"
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel(f"teacher p(class {r} | x)")
    ax.set_ylabel(f"student p(class {r} | x)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    heading = title if title is not None else f"Teacher vs student confidence, class {r}"
    ax.set_title(f"{heading}\n{sigma_text}", fontsize="medium")
    return _save(fig, path)


def speed_sweep_plot(
    rows: list[dict[str, Any]], path: str | Path, *, teacher_accuracy: float | None = None
) -> Path:
    """An early-exit student's trade-off: accuracy and conf_sigma against the measured
    speed-up over the teacher, one point per speed threshold (labelled), the trained speed
    ringed. ``rows`` as :func:`distill.speed_sweep.speed_sweep` makes them."""
    fig = Figure(figsize=(7.2, 6.4), dpi=_DPI, layout="constrained")
    ax_acc, ax_sigma = fig.subplots(2, 1, sharex=True, squeeze=True)
    x = [float(r["speedup_vs_teacher"]) for r in rows]
    for ax, key, color in (
        (ax_acc, "accuracy", _STUDENT_COLOR),
        (ax_sigma, "conf_sigma", _TEACHER_COLOR),
    ):
        pts = [(xi, r[key], r) for xi, r in zip(x, rows, strict=True) if r[key] is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=color)
        for xi, yi, r in pts:
            ax.annotate(
                f"{r['speed']:g}",
                (xi, yi),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize="x-small",
            )
            if r.get("trained"):
                ax.plot([xi], [yi], marker="o", markersize=12, fillstyle="none", color="black")
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
    if teacher_accuracy is not None:
        ax_acc.axhline(
            teacher_accuracy,
            linestyle="--",
            color="grey",
            linewidth=1,
            label=f"teacher ({teacher_accuracy:.3f})",
        )
        ax_acc.legend(loc="lower left", fontsize="small")
    ax_sigma.axvline(1.0, linestyle=":", color="grey", linewidth=1)
    ax_sigma.set_xlabel("measured speed-up over the teacher (labels: speed threshold)")
    ax_acc.set_title(
        "Early exit: accuracy and conf_sigma over the speed threshold (ringed: the trained speed)",
        fontsize="medium",
    )
    return _save(fig, path)
