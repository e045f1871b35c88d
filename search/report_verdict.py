"""The report's plain words: is confidence preserved, at what accuracy cost, how many fit.

Confidence is preserved (DESIGN.md) when the paper's sigma (``conf_sigma``) is <= kappa.
The verdict is about the recommended trial of :mod:`search.leaderboard` (THE RULE).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from optuna.trial import FrozenTrial, TrialState

from .leaderboard import METRIC_PREFIX, is_feasible, number_or_none, recommended_trial

__all__ = ["Verdict", "judge", "metric"]

State = Literal["preserved", "not_preserved", "undecided", "no_trials"]


@dataclass(frozen=True)
class Verdict:
    """``headline`` answers the question; ``details`` are the supporting sentences."""

    state: State
    headline: str
    details: list[str] = field(default_factory=list)


def metric(trial: FrozenTrial, name: str) -> float | None:
    """The trial's ``metric:<name>`` as a finite float, or None (missing, None, NaN, bool)."""
    f = number_or_none(trial.user_attrs.get(f"{METRIC_PREFIX}{name}"))
    return f if f is not None and math.isfinite(f) else None


def _points(diff: float) -> str:
    return f"{abs(diff):.4f}, {abs(diff) * 100:.1f} percentage points"


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _others(trials: Sequence[FrozenTrial]) -> list[str]:
    failed = [t for t in trials if t.state == TrialState.FAIL]
    pruned = sum(t.state == TrialState.PRUNED for t in trials)
    active = sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
    parts = []
    if failed:
        parts.append(f"{len(failed)} failed")
    if pruned:
        parts.append(f"{pruned} pruned")
    if active:
        parts.append(f"{active} running or waiting")
    out = [f"Other trials: {', '.join(parts)}."] if parts else []
    errors = [t for t in failed if t.user_attrs.get("error")]
    if errors:
        last = max(errors, key=lambda t: t.number)
        out.append(f"Latest failure (trial {last.number}): {str(last.user_attrs['error'])[:300]}")
    return out


def _cost(
    best: FrozenTrial, complete: Sequence[FrozenTrial], teacher_accuracy: float | None
) -> list[str]:
    acc = metric(best, "accuracy")
    if acc is None:
        return [f"Trial {best.number} has no accuracy, so its accuracy cost is unknown."]
    scored = [(a, t) for t in complete if (a := metric(t, "accuracy")) is not None]
    top_acc, top = max(scored, key=lambda p: (p[0], -p[1].number))
    out = []
    if top_acc <= acc:
        out.append(
            f"Its accuracy is {acc:.4f}, the highest of the completed trials: no accuracy is "
            "given up against the other trials."
        )
    else:
        breaks = "" if is_feasible(top) else ", which breaks the study's constraints"
        out.append(
            f"Its accuracy is {acc:.4f}: {_points(top_acc - acc)} below the most accurate "
            f"completed trial, trial {top.number} ({top_acc:.4f}{breaks})."
        )
    if teacher_accuracy is not None:
        gap = teacher_accuracy - acc
        where = "below" if gap > 0 else "above" if gap < 0 else "level with"
        amount = "" if gap == 0 else f"{_points(gap)} "
        out.append(
            f"The teacher's accuracy (teacher_accuracy) is {teacher_accuracy:.4f}: the "
            f"student is {amount}{where} it."
        )
    bias = metric(best, "conf_bias")
    if bias is not None:
        out.append(
            f"conf_bias = {bias:+.4f} (positive: the student is less sure of the true class "
            "than the teacher; negative: more sure)."
        )
    return out


def judge(
    trials: Sequence[FrozenTrial],
    best: FrozenTrial | None,
    kappa: float | None,
    teacher_accuracy: float | None,
) -> Verdict:
    """The verdict on ``best`` (the recommended trial, or None) against ``kappa``."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    others = _others(trials)
    if not complete:
        total = _plural(len(trials), "trial", "trials")
        return Verdict(
            "no_trials",
            "No trial has completed yet, so there is no student to judge.",
            [f"The study has {total} so far, none of them complete.", *others],
        )
    sigmas = {t.number: metric(t, "conf_sigma") for t in complete}
    within = [
        t
        for t in complete
        if kappa is not None and (s := sigmas[t.number]) is not None and s <= kappa
    ]
    feasible = sum(is_feasible(t) for t in complete)
    count = f"{feasible} of {len(complete)} completed trials meet the study's constraints"
    if kappa is not None:
        count += f"; {len(within)} of {len(complete)} have conf_sigma ≤ κ = {kappa:g}"
    counts = [count + ".", *others]

    if best is None:
        defined = [(s, n) for n, s in sigmas.items() if s is not None]
        if kappa is not None and not within:
            lowest = (
                f"the lowest conf_sigma is {min(defined)[0]:.4f} (trial {min(defined)[1]})"
                if defined
                else "no completed trial has a conf_sigma"
            )
            return Verdict(
                "not_preserved",
                "Confidence is NOT preserved by any completed trial, so no student is recommended.",
                [f"Against κ = {kappa:g}, {lowest}.", *counts],
            )
        return Verdict(
            "undecided",
            "No completed trial meets the study's constraints, so no student is recommended.",
            counts,
        )

    sigma = sigmas.get(best.number)
    n = best.number
    state: State
    extra: list[str] = []
    if kappa is None:
        state = "undecided"
        shown = f"{sigma:.4f}" if sigma is not None else "undefined"
        headline = (
            f"No κ is set, so preservation cannot be judged: the recommended trial {n} has "
            f"conf_sigma = {shown}. Add the constraint {{metric: conf_sigma, max: κ}} to the "
            "study spec, or give the report a κ."
        )
    elif sigma is None:
        state = "undecided"
        headline = (
            f"The recommended trial {n} has no conf_sigma (fewer than 2 examples that both "
            "models classify correctly), so preservation cannot be judged."
        )
    elif sigma <= kappa:
        state = "preserved"
        headline = (
            f"Confidence is preserved: the recommended trial {n} has conf_sigma = "
            f"{sigma:.4f} ≤ κ = {kappa:g}."
        )
    else:
        state = "not_preserved"
        headline = (
            f"Confidence is NOT preserved: the recommended trial {n} has conf_sigma = "
            f"{sigma:.4f} > κ = {kappa:g}."
        )
        alt = recommended_trial(within)
        if alt is not None:
            alt_acc = metric(alt, "accuracy")
            shown_acc = f"{alt_acc:.4f}" if alt_acc is not None else "unknown"
            extra.append(
                f"The most accurate trial with conf_sigma ≤ κ is trial {alt.number} "
                f"(accuracy {shown_acc}, conf_sigma {sigmas[alt.number]:.4f})."
            )
        elif not within:
            extra.append(f"No completed trial has conf_sigma ≤ κ = {kappa:g}.")
    return Verdict(state, headline, [*_cost(best, complete, teacher_accuracy), *extra, *counts])
