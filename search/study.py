"""Spec -> Optuna study: samplers and pruners by name, study creation, status."""

from __future__ import annotations

import uuid
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import Engine

from . import tables
from .pruning import make_progress_pruner, make_single_objective_pruner
from .space import is_conditional
from .spec import StudySpec

SPEC_ATTR = "kdsearch:spec"


def make_sampler(spec: StudySpec, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """Each worker seeds its sampler differently, or two workers would propose twins."""
    seed = spec.seed + 1000 * worker_index
    name = spec.sampler
    if name == "tpe":
        # a conditional space (several student families) is sampled per group of
        # parameters that occur together, so each family's parameters are modelled apart
        grouped = is_conditional(spec.parsed_space())
        return optuna.samplers.TPESampler(
            seed=seed,
            constant_liar=True,
            n_startup_trials=tpe_startup_trials(spec.n_trials),
            multivariate=grouped,
            group=grouped,
        )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=8)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    grid = {n: p.grid_values() for n, p in spec.parsed_space().items() if not p.is_fixed}
    return optuna.samplers.GridSampler(grid, seed=seed)


def tpe_startup_trials(n_trials: int) -> int:
    """Random trials before TPE models the space: a fifth of the budget, between 2 and 5.

    Measured on the tabular KD benchmark (``bench/kdtable/sweep.py``, bench/RESULTS.md): 4 or 5
    start-up trials beat 10 and 20 at 20, 50 and 100-trial budgets; 2 or 3 model too soon."""
    return max(2, min(5, n_trials // 5))


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """Optuna's pruner for a single-objective study that names one; otherwise the objective
    applies kdsearch's progress rule itself (:class:`search.pruning.IntermediateReporter`)."""
    if make_progress_pruner(spec.pruner, len(spec.objectives)) is not None:
        return optuna.pruners.NopPruner()
    if len(spec.objectives) > 1:
        return optuna.pruners.NopPruner()
    name = "median" if spec.pruner.name == "auto" else spec.pruner.name
    return make_single_objective_pruner(name, spec.seed)


def create(
    engine: Engine,
    storage: BaseStorage | str,
    spec: StudySpec,
    *,
    study_name: str | None = None,
    owner: str | None = None,
    max_active: int | None = None,
) -> str:
    """Create the Optuna study and its kdsearch record; returns the study name.

    With ``max_active``, raises :class:`kdsearch.search.tables.QuotaExceeded` (and leaves nothing
    behind) when the owner already has that many queued or running studies.
    """
    name = study_name or spec.name or f"kd-{uuid.uuid4().hex[:10]}"
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        directions=[
            StudyDirection.MAXIMIZE if d == "maximize" else StudyDirection.MINIMIZE
            for d in spec.directions
        ],
    )
    study.set_metric_names(spec.metric_names)
    spec_json = spec.model_dump(mode="json")
    study.set_user_attr(SPEC_ATTR, spec_json)
    try:
        tables.register(engine, name, spec_json, spec.n_trials, spec.timeout_s, owner, max_active)
    except BaseException:
        optuna.delete_study(study_name=name, storage=storage)
        raise
    return name


def counted(trial: FrozenTrial) -> bool:
    """Does this trial use up budget? Not when its worker died or was stopped."""
    if trial.state == TrialState.FAIL and trial.user_attrs.get("abandoned"):
        return False
    return trial.state != TrialState.FAIL or "error" in trial.user_attrs


def consecutive_failures(trials: list[FrozenTrial]) -> tuple[int, str | None]:
    """Failed trials (with an error) in a row at the end, and the latest error."""
    done = [t for t in trials if t.state.is_finished() and counted(t)]
    done.sort(key=lambda t: t.number)
    n, last = 0, None
    for t in reversed(done):
        if t.state != TrialState.FAIL:
            break
        n += 1
        last = last or t.user_attrs.get("error")
    return n, last


def state_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    counts: dict[str, int] = {s.name: 0 for s in TrialState}
    for t in trials:
        counts[t.state.name] += 1
    return counts


def summary(engine: Engine, study: optuna.Study) -> dict[str, Any]:
    run = tables.get(engine, study.study_name)
    trials = study.get_trials(deepcopy=False)
    return {
        "study": study.study_name,
        "status": run.status if run else "unknown",
        "error": run.error if run else None,
        "n_trials": run.n_trials if run else None,
        "trials": state_counts(trials),
    }
