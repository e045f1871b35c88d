"""Run a kdsearch sampler and pruner against the table instead of training.

Each trial is a real Optuna trial of an in-memory study built the way a kdsearch worker
builds it (``search.samplers.make_sampler`` / ``search.pruners.make_pruner`` on the spec,
parameters drawn by ``search.space.sample_params``). Its parameters are answered with the
nearest grid point's learning curve: every evaluation goes through
``search.pruning.IntermediateReporter``, the same code a real trial's evaluations go
through, so a pruned trial stops where a real one would. A trial costs the table's wall
seconds up to its last evaluation (all of them for a complete trial).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import TrialState

from bench.kdtable.grid import config_key, nearest
from kdsearch.search.objective import objective_values
from kdsearch.search.pruners import make_pruner
from kdsearch.search.pruning import IntermediateReporter
from kdsearch.search.samplers import make_sampler
from kdsearch.search.space import sample_params
from kdsearch.search.spec import StudySpec

COST_ATTR = "sim_seconds"
KEY_ATTR = "grid_key"


@dataclass(frozen=True)
class Table:
    """The evaluated grid: its axes, the spec it answers and one row per config."""

    axes: dict[str, tuple[float, ...]]
    spec: dict[str, Any]
    rows: dict[str, dict[str, Any]]
    meta: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> Table:
        with gzip.open(path, "rt") as f:
            data = json.load(f)
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Table:
        meta = dict(data["meta"])
        axes = {k: tuple(v) for k, v in meta["axes"].items()}
        rows = {row["key"]: row for row in data["configs"]}
        return cls(axes, dict(meta["spec"]), rows, meta)

    def lookup(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The row of the grid point nearest to ``params``."""
        key = config_key(nearest(params, self.axes), self.axes)
        try:
            return self.rows[key]
        except KeyError:
            raise KeyError(f"the table has no row {key!r} (an incomplete table?)") from None


@dataclass(frozen=True)
class SimTrial:
    number: int
    key: str
    state: str  # COMPLETE or PRUNED
    values: tuple[float, ...] | None  # final objective values of a COMPLETE trial
    seconds: float  # what the trial cost


def simulate(
    table: Table,
    spec: StudySpec,
    n_trials: int | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
) -> list[SimTrial]:
    """Run ``spec``'s sampler (or ``sampler``) and pruner for ``n_trials`` (default
    ``spec.n_trials``)."""
    study = optuna.create_study(
        directions=[StudyDirection(1 if d == "minimize" else 2) for d in spec.directions],
        sampler=sampler or make_sampler(spec),
        pruner=make_pruner(spec),
    )
    space = spec.parsed_space()
    report = IntermediateReporter.from_spec(spec)
    multi = len(spec.objectives) > 1

    def objective(trial: optuna.Trial) -> Sequence[float] | float:
        params = sample_params(space, trial, spec.student.family)
        row = table.lookup(params)
        trial.set_user_attr(KEY_ATTR, row["key"])
        curve = row["curve"]
        for i, point in enumerate(curve):
            trial.set_user_attr(COST_ATTR, point["seconds"])
            values = objective_values(spec, point["values"])
            report(trial, point["step"], row["total_steps"], values, i == len(curve) - 1)
        trial.set_user_attr(COST_ATTR, row["seconds"])
        final = objective_values(spec, row["final"])
        return final if multi else final[0]

    study.optimize(objective, n_trials=n_trials or spec.n_trials, catch=())
    out = []
    for t in study.trials:
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            raise RuntimeError(f"simulated trial {t.number} ended {t.state.name}")
        out.append(
            SimTrial(
                t.number,
                str(t.user_attrs[KEY_ATTR]),
                t.state.name,
                tuple(t.values) if t.state == TrialState.COMPLETE else None,
                float(t.user_attrs[COST_ATTR]),
            )
        )
    return out
