"""The report's own picture: accuracy against conf_sigma, the front, kappa, the pick.

matplotlib's object API on the Agg canvas (no pyplot, no global state), like
``distill.plots``: safe in server threads and worker processes. Returns PNG bytes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .report import Point

__all__ = ["pareto_png"]

_DPI = 100
_SIZE_IN = (10.0, 5.6)
_FEASIBLE = "#1f77b4"
_INFEASIBLE = "#9e9e9e"
_FRONT = "#ff7f0e"
_PICK = "#2ca02c"
_KAPPA = "#d62728"


def pareto_png(
    pts: Sequence[Point],
    kappa: float | None,
    recommended: int | None,
    teacher_accuracy: float | None,
) -> bytes:
    """Scatter of completed trials: x = conf_sigma (lower is better), y = accuracy."""
    fig = Figure(figsize=_SIZE_IN, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)

    xs = [p.conf_sigma for p in pts]
    ys = [p.accuracy for p in pts]
    x_hi = max([*xs, kappa or 0.0, 0.01]) * 1.15
    if kappa is not None:
        ax.axvspan(kappa, x_hi, color=_KAPPA, alpha=0.06, linewidth=0)
        ax.axvline(kappa, color=_KAPPA, linestyle="--", linewidth=1.5, label=f"κ = {kappa:g}")
        ax.text(
            kappa,
            1.0,
            "  confidence preserved ←  → not preserved",
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize="small",
            color=_KAPPA,
        )
    if teacher_accuracy is not None:
        ax.axhline(
            teacher_accuracy,
            color="grey",
            linestyle=":",
            linewidth=1.2,
            label=f"teacher accuracy = {teacher_accuracy:.4f}",
        )

    for feasible, color, label in (
        (True, _FEASIBLE, "trial meeting the constraints"),
        (False, _INFEASIBLE, "trial breaking the constraints"),
    ):
        group = [p for p in pts if p.feasible is feasible]
        if group:
            ax.scatter(
                [p.conf_sigma for p in group],
                [p.accuracy for p in group],
                s=36,
                color=color,
                marker="o" if feasible else "X",
                alpha=0.8,
                label=f"{label} ({len(group)})",
                zorder=3,
            )
    front = sorted((p for p in pts if p.pareto), key=lambda p: p.conf_sigma)
    if front:
        ax.step(
            [p.conf_sigma for p in front],
            [p.accuracy for p in front],
            where="post",
            color=_FRONT,
            linewidth=1.5,
            zorder=2,
        )
        ax.scatter(
            [p.conf_sigma for p in front],
            [p.accuracy for p in front],
            s=110,
            facecolors="none",
            edgecolors=_FRONT,
            linewidths=2,
            label=f"Pareto front ({len(front)})",
            zorder=4,
        )
    pick = next((p for p in pts if p.number == recommended), None)
    if pick is not None:
        ax.scatter(
            [pick.conf_sigma],
            [pick.accuracy],
            s=320,
            marker="*",
            color=_PICK,
            edgecolors="black",
            linewidths=0.8,
            label=f"recommended: trial {pick.number}",
            zorder=5,
        )
    for p in pts:
        ax.annotate(
            f"#{p.number}",
            (p.conf_sigma, p.accuracy),
            textcoords="offset points",
            xytext=(6, 5),
            fontsize="x-small",
            zorder=6,
        )

    ax.set_xlim(0.0, x_hi)
    if ys or teacher_accuracy is not None:
        lo = min([*ys, teacher_accuracy if teacher_accuracy is not None else 1.0])
        hi = max([*ys, teacher_accuracy if teacher_accuracy is not None else 0.0])
        pad = max(0.02, (hi - lo) * 0.15)
        ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad) + 0.005)
    ax.set_xlabel("conf_sigma (the paper's sigma; lower preserves confidence better)")
    ax.set_ylabel("accuracy (held-out)")
    ax.grid(True, alpha=0.3)
    if not pts:
        ax.text(
            0.5,
            0.5,
            "no completed trial with accuracy and conf_sigma",
            transform=ax.transAxes,
            ha="center",
            va="center",
        )
    else:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    fig.clear()
    return buf.getvalue()
