"""The report's plain words: is confidence preserved, at what accuracy cost, how many fit.

Confidence is preserved (docs/metrics.md) when the paper's sigma (``conf_sigma``) is <= kappa.
The verdict is about the recommended trial of :mod:`search.leaderboard` (THE RULE, or the
study's final choice). Once the study has scored it on the held-out test split, the verdict
judges the test numbers (the confirmed test mean when it was re-run with fresh seeds), not
the validation numbers it was selected on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from optuna.trial import FrozenTrial, TrialState

from .leaderboard import METRIC_PREFIX, is_feasible, number_or_none, recommended_trial

__all__ = ["HeldOut", "Verdict", "held_out", "judge", "metric"]

State = Literal["preserved", "not_preserved", "undecided", "no_trials"]


@dataclass(frozen=True)
class Verdict:
    """``headline`` answers the question; ``details`` are the supporting sentences."""

    state: State
    headline: str
    details: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HeldOut:
    """The recommended trial's numbers on the test split, and what they are."""

    accuracy: float | None
    conf_sigma: float | None
    teacher_accuracy: float | None
    basis: str
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    decision_flip_rate: float | None = None

    def shown(self, name: str) -> str:
        value = getattr(self, name)
        text = f"{value:.4f}" if value is not None else "undefined"
        if name in self.intervals:
            low, high = self.intervals[name]
            text += f" (95% CI {low:.4f}–{high:.4f})"
        return text


def held_out(number: int, final: Mapping[str, Any] | None) -> HeldOut | None:
    """The trial's test numbers from the study's final results: the confirmed test mean
    when it was re-run, else its own test score; None before the study has scored it."""
    if not final:
        return None
    key, rows = str(number), final.get("n_test_rows", 0)
    confirmed = final.get("confirmed", {}).get(key) or {}
    source = confirmed.get("test_mean")
    if source:
        ci = confirmed.get("ci") or {}
        basis = (
            f"the mean of {len(confirmed['seeds'])} fresh-seed re-runs on the {rows} "
            "held-out test rows"
        )
    else:
        source = final.get("test", {}).get(key)
        ci = final.get("intervals", {}).get(key) or {}
        basis = f"the {rows} held-out test rows"
    if not source:
        return None
    return HeldOut(
        accuracy=number_or_none(source.get("accuracy")),
        conf_sigma=number_or_none(source.get("conf_sigma")),
        teacher_accuracy=number_or_none(source.get("teacher_accuracy")),
        decision_flip_rate=number_or_none(source.get("decision_flip_rate")),
        basis=basis,
        intervals={k: (float(v["low"]), float(v["high"])) for k, v in ci.items()},
    )


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


def _flips(
    best: FrozenTrial, test: HeldOut | None, thresholds: Sequence[float] | None
) -> list[str]:
    """What the student's scores would do at the operating thresholds."""
    rate, where = metric(best, "decision_flip_rate"), "validation"
    if test is not None and test.decision_flip_rate is not None:
        rate, where = test.decision_flip_rate, "the test rows"
    if rate is None:
        return []
    at = ", ".join(f"{t:g}" for t in thresholds) if thresholds else "the operating thresholds"
    return [
        f"decision_flip_rate = {rate:.4f} on {where}: at the thresholds {at}, the student "
        f"would route {rate * 100:.1f}% of items to a different band than the teacher."
    ]


def judge(
    trials: Sequence[FrozenTrial],
    best: FrozenTrial | None,
    kappa: float | None,
    teacher_accuracy: float | None,
    test: HeldOut | None = None,
    thresholds: Sequence[float] | None = None,
) -> Verdict:
    """The verdict on ``best`` (the recommended trial, or None) against ``kappa``: on its
    held-out ``test`` numbers when given, else on its validation numbers. ``thresholds``:
    the study's operating thresholds, for the decision-flip sentence."""
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
    first: list[str] = []  # the held-out numbers come before the validation ones
    on = ""
    if test is not None:
        val_sigma = f"{sigma:.4f}" if sigma is not None else "undefined"
        val_acc = metric(best, "accuracy")
        first.append(
            f"Judged on {test.basis}: accuracy {test.shown('accuracy')}, conf_sigma "
            f"{test.shown('conf_sigma')}. On validation, where the search selected it: "
            f"accuracy {val_acc if val_acc is None else f'{val_acc:.4f}'}, conf_sigma "
            f"{val_sigma}."
        )
        if test.teacher_accuracy is not None and test.accuracy is not None:
            gap = test.teacher_accuracy - test.accuracy
            first.append(
                f"On the test rows the teacher's accuracy is {test.teacher_accuracy:.4f}: the "
                f"student is {_points(gap)} {'below' if gap > 0 else 'above'} it."
            )
        sigma, on = test.conf_sigma, " on held-out test data"
        band = test.intervals.get("conf_sigma")
        if kappa is not None and band is not None and band[0] <= kappa <= band[1]:
            first.append(
                f"The 95% interval of conf_sigma contains κ = {kappa:g}: the test rows cannot "
                "tell for sure; more test rows or confirmation seeds would."
            )
    if kappa is None:
        state = "undecided"
        shown = f"{sigma:.4f}" if sigma is not None else "undefined"
        headline = (
            f"No κ is set, so preservation cannot be judged: the recommended trial {n} has "
            f"conf_sigma = {shown}{on}. Add the constraint {{metric: conf_sigma, max: κ}} to the "
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
            f"Confidence is preserved{on}: the recommended trial {n} has conf_sigma = "
            f"{sigma:.4f} ≤ κ = {kappa:g}."
        )
    else:
        state = "not_preserved"
        headline = (
            f"Confidence is NOT preserved{on}: the recommended trial {n} has conf_sigma = "
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
    cost = _cost(best, complete, teacher_accuracy)
    if first:
        cost = [
            f"On validation: {c[0].lower()}{c[1:]}" if i == 0 else c for i, c in enumerate(cost)
        ]
    flips = _flips(best, test, thresholds)
    return Verdict(state, headline, [*first, *cost, *flips, *extra, *counts])
