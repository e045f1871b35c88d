"""The pruner registry: every name ``pruner.name`` accepts, what it means, and its factory.

Two kinds: kdsearch's rules on progress (``dominance``, ``pareto_rank``; any number of
objectives, :mod:`search.pruning`) and Optuna's pruners (one objective). Two names are
aliases that depend on the study: ``auto`` and ``median`` (what specs said before the rules
had names). The spec's allowed names, its validation, the objective and the docs read this
registry; adding a pruner is its factory plus one :func:`register_pruner` line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from .pruning import DominancePruner, ParetoRankPruner, ProgressPruner

__all__ = [
    "PrunerDef",
    "make_progress_pruner",
    "make_pruner",
    "make_single_objective_pruner",
    "pruner_names",
    "register_pruner",
    "resolve_pruner",
]


@dataclass(frozen=True)
class PrunerDef:
    """``progress``: kdsearch's rule, built from the spec's ``PrunerSpec``. ``optuna``:
    Optuna's pruner (single-objective studies). ``any_objectives``: usable in a
    multi-objective study. ``single``/``multi``: the name this one stands for in a study
    with one objective / several (aliases)."""

    name: str
    description: str
    progress: Callable[[Any], ProgressPruner] | None = None
    optuna: Callable[[], optuna.pruners.BasePruner] | None = None
    any_objectives: bool = True
    single: str | None = None
    multi: str | None = None


_PRUNERS: dict[str, PrunerDef] = {}


def register_pruner(pruner: PrunerDef) -> PrunerDef:
    if pruner.name in _PRUNERS:
        raise ValueError(f"a pruner named {pruner.name!r} is already registered")
    _PRUNERS[pruner.name] = pruner
    return pruner


def pruner_names() -> tuple[str, ...]:
    return tuple(_PRUNERS)


def all_pruners() -> list[PrunerDef]:
    return list(_PRUNERS.values())


def resolve_pruner(name: str, n_objectives: int) -> PrunerDef:
    """The pruner ``name`` means in a study with ``n_objectives`` (aliases followed)."""
    try:
        found = _PRUNERS[name]
    except KeyError:
        raise ValueError(f"unknown pruner {name!r}: use one of {', '.join(_PRUNERS)}") from None
    target = found.multi if n_objectives > 1 else found.single
    return _PRUNERS[target] if target else found


def make_progress_pruner(pruner: Any, n_objectives: int) -> ProgressPruner | None:
    """The spec's progress rule (``pruner`` is a :class:`search.spec.PrunerSpec`), or None
    when the study uses one of Optuna's pruners or none."""
    found = resolve_pruner(pruner.name, n_objectives)
    return found.progress(pruner) if found.progress is not None else None


def make_single_objective_pruner(name: str) -> optuna.pruners.BasePruner:
    """Optuna's pruner for a single-objective study, by spec name."""
    found = resolve_pruner(name, 1)
    if found.optuna is None:
        optuna_names = [p.name for p in _PRUNERS.values() if p.optuna is not None]
        raise ValueError(
            f"pruner {name!r} is not one of Optuna's pruners: use one of {', '.join(optuna_names)}"
        )
    return found.optuna()


def make_pruner(spec: Any) -> optuna.pruners.BasePruner:
    """The pruner the Optuna study gets (``spec``: a :class:`search.spec.StudySpec`).
    kdsearch's progress rules are applied by the objective itself
    (:class:`search.pruning.IntermediateReporter`), so such studies, and every
    multi-objective one, get Optuna's no-op pruner."""
    n = len(spec.objectives)
    if n > 1 or make_progress_pruner(spec.pruner, n) is not None:
        return optuna.pruners.NopPruner()
    return make_single_objective_pruner(spec.pruner.name)


# --------------------------------------------------------------------------- the built-ins

for _pruner in (
    PrunerDef(
        "auto",
        "median for one objective, pareto_rank for several",
        single="median",
        multi="pareto_rank",
    ),
    PrunerDef(
        "dominance",
        "stop a trial dominated by min_dominating finished trials at the same progress",
        progress=lambda p: DominancePruner(
            p.min_trials, p.min_dominating, p.warmup_steps, p.warmup_progress
        ),
    ),
    PrunerDef(
        "pareto_rank",
        "stop a trial when percentile % of the finished trials sit in a strictly better "
        "non-dominated front at the same progress",
        progress=lambda p: ParetoRankPruner(
            p.min_trials, p.percentile, p.warmup_steps, p.warmup_progress
        ),
    ),
    PrunerDef(
        "median",
        "Optuna's median pruner (one objective); read as dominance with several",
        optuna=lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
        multi="dominance",
    ),
    PrunerDef(
        "hyperband",
        "Optuna's Hyperband pruner (one objective only)",
        optuna=lambda: optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3),
        any_objectives=False,
    ),
    PrunerDef(
        "successive_halving",
        "Optuna's successive-halving pruner (one objective only)",
        optuna=optuna.pruners.SuccessiveHalvingPruner,
        any_objectives=False,
    ),
    PrunerDef("none", "no pruning", optuna=optuna.pruners.NopPruner),
):
    register_pruner(_pruner)
