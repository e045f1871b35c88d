"""Pruning: Optuna's pruners for one objective, a Pareto-dominance rule for several.

Optuna 5 raises ``NotImplementedError`` from ``Trial.report`` when a study has more than one
objective, and its pruners only read ``FrozenTrial.intermediate_values`` (one float per step).
So a multi-objective trial stores its intermediate objective *vectors* itself, as the user
attribute :data:`INTERMEDIATE_ATTR`: a JSON object ``{"<step>": [v_1, ..., v_k]}`` with one
value per objective, in the study's objective order (:func:`record_intermediate` writes it,
:func:`intermediate_vectors` reads it back). :class:`DominancePruner` decides on those vectors.

Steps count finished units of work: kdsearch's objective records at the global optimiser step
``s`` of the evaluation (``EvalEvent.step``), ``1 <= s <= max_steps``, so ``max_steps`` for
:func:`estimate_saved_fraction` is a full trial's optimiser steps, and ``warmup_steps`` is in
optimiser steps too. Peers are matched on the same step, so the rule prunes among trials
with the same batch size and evaluation cadence.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import BaseTrial, FrozenTrial, TrialState

__all__ = [
    "INTERMEDIATE_ATTR",
    "SINGLE_OBJECTIVE_PRUNERS",
    "DominancePruner",
    "dominates",
    "estimate_saved_fraction",
    "intermediate_vectors",
    "make_single_objective_pruner",
    "record_intermediate",
]

INTERMEDIATE_ATTR = "kd_intermediate"
SINGLE_OBJECTIVE_PRUNERS = ("median", "hyperband", "successive_halving", "none")

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


# --------------------------------------------------------------------------- intermediates


def _check_step(step: int) -> int:
    try:
        value = operator.index(step)
    except TypeError:
        value = -1
    if isinstance(step, bool) or value < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    return value


def record_intermediate(trial: BaseTrial, step: int, values: Sequence[float]) -> None:
    """Store the objective vector ``values`` of ``trial`` at ``step`` (merged into the attr).

    A later call for the same step replaces the earlier vector. Non-finite numbers are stored
    as JSON ``null`` and read back as NaN, which ranks as the worst value in :func:`dominates`.
    For a live :class:`optuna.Trial` the vector length must match the study's objectives.
    """
    step = _check_step(step)
    vector = [float(v) for v in values]
    if not vector:
        raise ValueError("values must hold one value per objective, got an empty sequence")
    if isinstance(trial, optuna.Trial):
        n_objectives = len(trial.study.directions)
        if len(vector) != n_objectives:
            raise ValueError(
                f"values has {len(vector)} entries but the study has {n_objectives} objectives"
            )
    stored: dict[str, Any] = {}
    current = trial.user_attrs.get(INTERMEDIATE_ATTR)
    if isinstance(current, Mapping):
        stored.update(current)
    stored[str(step)] = [v if math.isfinite(v) else None for v in vector]
    trial.set_user_attr(INTERMEDIATE_ATTR, stored)


def _as_float(v: Any) -> float:
    if v is None or isinstance(v, bool):
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def intermediate_vectors(trial: FrozenTrial) -> dict[int, list[float]]:
    """The trial's intermediate objective vectors by step, sorted by step.

    Read from the :data:`INTERMEDIATE_ATTR` user attribute; a trial without it (a
    single-objective trial that used ``trial.report``) gives its ``intermediate_values`` as
    one-element vectors. Malformed entries are skipped; ``null`` values come back as NaN.
    """
    raw = trial.user_attrs.get(INTERMEDIATE_ATTR)
    out: dict[int, list[float]] = {}
    if isinstance(raw, Mapping):
        for key, vec in raw.items():
            try:
                step = int(key)
            except (TypeError, ValueError):
                continue
            if step < 0 or not isinstance(vec, list | tuple) or not vec:
                continue
            out[step] = [_as_float(v) for v in vec]
    elif trial.intermediate_values:
        out = {int(s): [_as_float(v)] for s, v in trial.intermediate_values.items()}
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------- dominance


def _loss(value: float, direction: StudyDirection) -> float:
    """Map a value so that lower is better; NaN (a missing value) is the worst."""
    v = _as_float(value)
    if math.isnan(v):
        return math.inf
    return -v if direction == StudyDirection.MAXIMIZE else v


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[StudyDirection]) -> bool:
    """True when ``a`` Pareto-dominates ``b``: no worse in every objective, better in one.

    Equal vectors do not dominate each other. NaN counts as the worst possible value.

    >>> from optuna.study import StudyDirection as D
    >>> dominates([0.9, 0.1], [0.8, 0.1], [D.MAXIMIZE, D.MINIMIZE])
    True
    >>> dominates([0.9, 0.1], [0.9, 0.1], [D.MAXIMIZE, D.MINIMIZE])
    False
    """
    if not (len(a) == len(b) == len(directions)):
        raise ValueError(
            f"vectors and directions must have the same length, got {len(a)}, {len(b)} "
            f"and {len(directions)}"
        )
    la = [_loss(v, d) for v, d in zip(a, directions, strict=True)]
    lb = [_loss(v, d) for v, d in zip(b, directions, strict=True)]
    no_worse = all(x <= y for x, y in zip(la, lb, strict=True))
    better = any(x < y for x, y in zip(la, lb, strict=True))
    return no_worse and better


# --------------------------------------------------------------------------- dominance pruner


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


class DominancePruner:
    """Multi-objective pruning by Pareto dominance of intermediate vectors.

    A trial is stopped at step ``s`` when its objective vector at ``s`` is dominated by the
    vectors at the same step ``s`` of at least ``min_dominating`` other trials. Only finished
    trials (COMPLETE or PRUNED) that recorded a vector at step ``s`` count as peers. Nothing is
    pruned while ``s < warmup_steps`` or while fewer than ``min_trials`` peers exist at ``s``.

    Example (inside an objective; ``study`` is the running study)::

        pruner = DominancePruner(min_trials=4, min_dominating=2, warmup_steps=1)
        for step in range(1, max_steps + 1):
            vector = train_and_evaluate(step)          # e.g. [accuracy, conf_sigma]
            record_intermediate(trial, step, vector)
            if pruner.should_prune(study, trial.number, step, vector):
                raise optuna.TrialPruned()
    """

    def __init__(self, min_trials: int = 4, min_dominating: int = 2, warmup_steps: int = 0):
        self.min_trials = _check_int("min_trials", min_trials, 1)
        self.min_dominating = _check_int("min_dominating", min_dominating, 1)
        self.warmup_steps = _check_int("warmup_steps", warmup_steps, 0)

    def __repr__(self) -> str:
        return (
            f"DominancePruner(min_trials={self.min_trials}, "
            f"min_dominating={self.min_dominating}, warmup_steps={self.warmup_steps})"
        )

    def should_prune(
        self, study: optuna.Study, trial_number: int, step: int, vector: Sequence[float]
    ) -> bool:
        """Decide for trial ``trial_number`` of ``study`` with ``vector`` at ``step``."""
        finished = [
            t
            for t in study.get_trials(deepcopy=False, states=_FINISHED)
            if t.number != trial_number
        ]
        return self.should_prune_vector(vector, step, finished, study.directions)

    def should_prune_vector(
        self,
        vector: Sequence[float],
        step: int,
        finished: Sequence[FrozenTrial],
        directions: Sequence[StudyDirection],
    ) -> bool:
        """The pure rule: is ``vector`` at ``step`` dominated by enough finished peers?

        Trials in ``finished`` that are not COMPLETE or PRUNED, or that have no vector of the
        right length at ``step``, are ignored.
        """
        step = _check_step(step)
        if len(vector) != len(directions):
            raise ValueError(
                f"vector has {len(vector)} entries but there are {len(directions)} objectives"
            )
        if step < self.warmup_steps:
            return False
        peers: list[list[float]] = []
        for t in finished:
            if t.state not in _FINISHED:
                continue
            v = intermediate_vectors(t).get(step)
            if v is not None and len(v) == len(directions):
                peers.append(v)
        if len(peers) < self.min_trials:
            return False
        n_dominating = sum(1 for p in peers if dominates(p, vector, directions))
        return n_dominating >= self.min_dominating


# --------------------------------------------------------------------------- single objective


def make_single_objective_pruner(name: str, seed: int | None = None) -> optuna.pruners.BasePruner:
    """Optuna's pruner for a single-objective study, by spec name.

    ``seed`` is accepted for symmetry with the samplers; Optuna 5's pruners take none (the
    Hyperband bracket of a trial is a hash of the study name and trial number).
    """
    del seed
    key = name.strip().lower() if isinstance(name, str) else name
    if key == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if key == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3)
    if key == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if key == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r}: use one of {', '.join(SINGLE_OBJECTIVE_PRUNERS)}")


# --------------------------------------------------------------------------- savings


def estimate_saved_fraction(study_trials: Sequence[FrozenTrial], max_steps: int) -> float:
    """Share of training steps not run thanks to pruning, in [0, 1].

    ``sum over PRUNED trials of (max_steps - last recorded step) / (n_trials * max_steps)``,
    where ``n_trials`` counts the COMPLETE and PRUNED trials (each would have run
    ``max_steps`` without pruning; FAIL, RUNNING and WAITING trials are left out). The last
    step comes from :data:`INTERMEDIATE_ATTR`, or ``intermediate_values`` for single-objective
    trials; a pruned trial with no recorded step saved all ``max_steps``.
    """
    _check_int("max_steps", max_steps, 1)
    considered = [t for t in study_trials if t.state in _FINISHED]
    if not considered:
        return 0.0
    saved = 0
    for t in considered:
        if t.state != TrialState.PRUNED:
            continue
        steps = intermediate_vectors(t)
        last = max(steps) if steps else 0
        saved += max_steps - min(last, max_steps)
    return saved / (len(considered) * max_steps)
