"""Pruning: Optuna's pruners for one objective; progress-based rules for any number.

Optuna's pruners only read ``FrozenTrial.intermediate_values`` (one float per step) and Optuna
5 refuses ``Trial.report`` in a multi-objective study, so kdsearch records each trial's
intermediate objective *vectors* and its budget itself (:mod:`search.intermediates`) and
decides with its own rules:

- ``dominance`` (:class:`DominancePruner`): stop a trial whose vector is Pareto-dominated by
  at least ``min_dominating`` peers at the same progress.
- ``pareto_rank`` (:class:`ParetoRankPruner`): sort the trial's vector and its peers' into
  non-dominated fronts and stop the trial when at least ``percentile`` % of the peers sit in
  a strictly better front (Optuna's ``PercentilePruner`` read on Pareto ranks).

Both compare trials at the same *progress*, the share of their own training budget done
(``step / budget``), so trials with different batch sizes, epochs or data sizes still meet:
a peer's vector at that progress is read off its curve by linear interpolation
(:func:`search.intermediates.vector_at`). Peers are finished trials (COMPLETE or PRUNED) whose
curve spans that progress; nothing is pruned while fewer than ``min_trials`` exist, or before
``warmup_progress`` (or ``warmup_steps`` optimiser steps). A trial that recorded no budget is
compared on raw steps with peers that recorded none either (studies from before budgets).

:class:`IntermediateReporter` is what an objective calls at each evaluation: it records the
vector, asks the study's rule (or Optuna's pruner for a single objective) and raises
``optuna.TrialPruned``. The tabular benchmark's simulator calls the same reporter.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from .dominance import dominates, pareto_ranks
from .intermediates import (
    budget_steps,
    check_step,
    intermediate_vectors,
    progress_curve,
    record_budget,
    record_intermediate,
    vector_at,
)

__all__ = [
    "DominancePruner",
    "IntermediateReporter",
    "ParetoRankPruner",
    "ProgressPruner",
    "estimate_saved_fraction",
]


_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


# --------------------------------------------------------------------------- progress rules


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_fraction(name: str, value: float, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


class ProgressPruner(ABC):
    """A multi-objective pruning rule that compares trials at the same progress.

    Subclasses say, in :meth:`decide`, whether a vector is bad enough among its peers'.
    """

    name: ClassVar[str]

    def __init__(self, min_trials: int = 4, warmup_steps: int = 0, warmup_progress: float = 0.0):
        self.min_trials = _check_int("min_trials", min_trials, 1)
        self.warmup_steps = _check_int("warmup_steps", warmup_steps, 0)
        self.warmup_progress = _check_fraction("warmup_progress", warmup_progress, 0.0, 1.0)

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({settings})"

    @abstractmethod
    def decide(
        self,
        vector: Sequence[float],
        peers: Sequence[Sequence[float]],
        directions: Sequence[StudyDirection],
    ) -> bool:
        """Prune ``vector`` given ``peers`` (at least ``min_trials`` of them)?"""

    def should_prune(
        self,
        study: optuna.Study,
        trial_number: int,
        step: int,
        vector: Sequence[float],
        total_steps: int | None = None,
    ) -> bool:
        """Decide for trial ``trial_number`` of ``study`` with ``vector`` at ``step`` of
        ``total_steps`` (None: the trial has no known budget; peers are matched on steps)."""
        finished = [
            t
            for t in study.get_trials(deepcopy=False, states=_FINISHED)
            if t.number != trial_number
        ]
        return self.should_prune_vector(vector, step, finished, study.directions, total_steps)

    def peer_vectors(
        self,
        step: int,
        finished: Sequence[FrozenTrial],
        n_objectives: int,
        total_steps: int | None = None,
    ) -> list[list[float]]:
        """The finished peers' vectors at this trial's progress (or at ``step`` without a
        budget); peers with no vector there, or of another length, are left out."""
        out: list[list[float]] = []
        for t in finished:
            if t.state not in _FINISHED:
                continue
            if total_steps is None:
                v = intermediate_vectors(t).get(step) if budget_steps(t) is None else None
            else:
                v = vector_at(progress_curve(t), step / total_steps)
            if v is not None and len(v) == n_objectives:
                out.append(v)
        return out

    def should_prune_vector(
        self,
        vector: Sequence[float],
        step: int,
        finished: Sequence[FrozenTrial],
        directions: Sequence[StudyDirection],
        total_steps: int | None = None,
    ) -> bool:
        """The pure rule: is ``vector`` at ``step`` (of ``total_steps``) bad enough among the
        finished peers? Trials in ``finished`` that are not COMPLETE or PRUNED are ignored."""
        step = check_step(step)
        if total_steps is not None:
            _check_int("total_steps", total_steps, 1)
        if len(vector) != len(directions):
            raise ValueError(
                f"vector has {len(vector)} entries but there are {len(directions)} objectives"
            )
        if step < self.warmup_steps:
            return False
        if total_steps is not None and step / total_steps < self.warmup_progress:
            return False
        peers = self.peer_vectors(step, finished, len(directions), total_steps)
        if len(peers) < self.min_trials:
            return False
        return self.decide(vector, peers, directions)


class DominancePruner(ProgressPruner):
    """Stop a trial dominated by at least ``min_dominating`` peers at the same progress.

    Example (inside an objective; ``study`` is the running study)::

        pruner = DominancePruner(min_trials=4, min_dominating=2, warmup_progress=0.25)
        for step in range(1, total + 1):
            vector = train_and_evaluate(step)          # e.g. [accuracy, conf_sigma]
            record_intermediate(trial, step, vector)
            if pruner.should_prune(study, trial.number, step, vector, total):
                raise optuna.TrialPruned()
    """

    name = "dominance"

    def __init__(
        self,
        min_trials: int = 4,
        min_dominating: int = 2,
        warmup_steps: int = 0,
        warmup_progress: float = 0.0,
    ):
        super().__init__(min_trials, warmup_steps, warmup_progress)
        self.min_dominating = _check_int("min_dominating", min_dominating, 1)

    def decide(
        self,
        vector: Sequence[float],
        peers: Sequence[Sequence[float]],
        directions: Sequence[StudyDirection],
    ) -> bool:
        n_dominating = sum(1 for p in peers if dominates(p, vector, directions))
        return n_dominating >= self.min_dominating


class ParetoRankPruner(ProgressPruner):
    """Stop a trial when ``percentile`` % or more of its peers sit in a strictly better
    non-dominated front at the same progress (with one objective: are strictly better).

    ``percentile=75`` (the default) stops a trial only when three quarters of its peers rank
    above it; ``percentile=50`` is a median rule on Pareto ranks and prunes about half again
    as much, at a measurable cost to the final front (bench/RESULTS.md, tabular KD benchmark).
    """

    name = "pareto_rank"

    def __init__(
        self,
        min_trials: int = 4,
        percentile: float = 75.0,
        warmup_steps: int = 0,
        warmup_progress: float = 0.0,
    ):
        super().__init__(min_trials, warmup_steps, warmup_progress)
        self.percentile = _check_fraction("percentile", percentile, 0.0, 100.0)
        if self.percentile <= 0:
            raise ValueError("percentile must be > 0 (0 would prune every trial)")

    def decide(
        self,
        vector: Sequence[float],
        peers: Sequence[Sequence[float]],
        directions: Sequence[StudyDirection],
    ) -> bool:
        ranks = pareto_ranks([*peers, vector], directions)
        mine = ranks[-1]
        better = sum(1 for r in ranks[:-1] if r < mine)
        return better >= self.percentile / 100.0 * len(peers)


# --------------------------------------------------------------------------- the reporter


class IntermediateReporter:
    """Records a trial's evaluations and stops it when the study's pruner says so.

    ``rule`` is the study's progress rule (None: a single-objective study with one of Optuna's
    pruners, read through ``trial.report``/``trial.should_prune``, or no pruning). The final
    evaluation is recorded but never pruned: training is done, stopping would only lose it.
    """

    def __init__(self, rule: ProgressPruner | None, n_objectives: int):
        self.rule, self.n_objectives = rule, n_objectives

    @classmethod
    def from_spec(cls, spec: Any) -> IntermediateReporter:
        """For a :class:`search.spec.StudySpec`."""
        from .pruners import make_progress_pruner  # the registry imports this module

        n = len(spec.objectives)
        return cls(make_progress_pruner(spec.pruner, n), n)

    def __call__(
        self,
        trial: optuna.Trial,
        step: int,
        total_steps: int,
        values: Sequence[float],
        final: bool,
    ) -> None:
        if self.rule is None and self.n_objectives == 1:
            trial.report(values[0], step)
            if not final and trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step} of {total_steps}")
            return
        record_budget(trial, total_steps)
        record_intermediate(trial, step, values)
        if final or self.rule is None:
            return
        if self.rule.should_prune(trial.study, trial.number, step, values, total_steps):
            raise optuna.TrialPruned(
                f"{self.rule.name}: pruned at {step / total_steps:.0%} of its budget "
                f"(step {step} of {total_steps})"
            )


# --------------------------------------------------------------------------- savings


def estimate_saved_fraction(
    study_trials: Sequence[FrozenTrial], max_steps: int | None = None
) -> float:
    """Share of training steps not run thanks to pruning, in [0, 1].

    ``sum over PRUNED trials of (budget - last recorded step) / sum over trials of budget``,
    over the COMPLETE and PRUNED trials (FAIL, RUNNING and WAITING ones are left out). A
    trial's budget is the one it recorded (:data:`search.intermediates.BUDGET_ATTR`), else
    ``max_steps``; a trial with neither is left out. The last step comes from the recorded
    vectors, or ``intermediate_values`` for single-objective trials; a pruned trial with no
    recorded step saved its whole budget.
    """
    if max_steps is not None:
        _check_int("max_steps", max_steps, 1)
    saved = total = 0
    for t in study_trials:
        if t.state not in _FINISHED:
            continue
        budget = budget_steps(t) or max_steps
        if budget is None:
            continue
        total += budget
        if t.state == TrialState.PRUNED:
            steps = intermediate_vectors(t)
            last = max(steps) if steps else 0
            saved += budget - min(last, budget)
    return saved / total if total else 0.0
