"""The grid of the tabular KD benchmark and the study spec it answers.

Every axis is a search-space parameter of kdsearch. The spec's ranges reach half a grid cell
beyond the outer points (in log space for ``temperature`` and ``lr``), so nearest-point lookup
gives each grid value the same share of the range and a random sampler hits every grid
point equally often. Integer axes (``epochs``, ``student_layers``) are sampled as integers.

The data, teacher and student are the benchmarks' tiny setting (``bench._trials.TINY``): the
builtin MiniLM teacher fine-tuned on 320 rotten_tomatoes snippets, 200 validation rows,
sequences of 48 tokens, batch 16 (20 optimiser steps an epoch), an evaluation every 5 steps.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from bench._trials import TINY_TEACHER

# axis -> grid values (ascending); the order is the order of a config's key
AXES: dict[str, tuple[float, ...]] = {
    "temperature": (1.0, 2.0, 4.0, 8.0),
    "alpha": (0.1, 0.5, 0.9),
    "lr": (3e-5, 1.5e-4, 7.5e-4),
    "epochs": (1, 2),
    "student_layers": (1, 2),
    "hidden_weight": (0.0, 1.0),
    "attention_weight": (0.0, 1.0),
}
LOG_AXES = frozenset({"temperature", "lr"})
INT_AXES = frozenset({"epochs", "student_layers"})
OBJECTIVES = [
    {"metric": "accuracy", "direction": "maximize"},
    {"metric": "conf_sigma", "direction": "minimize"},
]
BATCH_SIZE = 16
EVAL_EVERY = 5
SEED = 0


def _half_cell(values: Sequence[float], log: bool) -> tuple[float, float]:
    """The range that puts each value in the middle of its own cell."""
    if len(values) == 1:
        return values[0], values[0]
    f = math.log if log else (lambda x: x)
    lo_gap = (f(values[1]) - f(values[0])) / 2
    hi_gap = (f(values[-1]) - f(values[-2])) / 2
    if log:
        return values[0] * math.exp(-lo_gap), values[-1] * math.exp(hi_gap)
    return values[0] - lo_gap, values[-1] + hi_gap


def search_space() -> dict[str, Any]:
    """The spec's ``search_space`` the grid answers."""
    space: dict[str, Any] = {"batch_size": BATCH_SIZE}
    for name, values in AXES.items():
        if name in INT_AXES:
            space[name] = {"low": int(values[0]), "high": int(values[-1]), "step": 1}
            continue
        low, high = _half_cell(values, name in LOG_AXES)
        if name not in LOG_AXES:
            low = max(0.0, low)  # weights and alpha cannot go below 0 (alpha <= 1 too)
            high = min(1.0, high) if name == "alpha" else high
        space[name] = {"low": round(low, 10), "high": round(high, 10), "log": name in LOG_AXES}
    return space


def study_spec(**overrides: Any) -> dict[str, Any]:
    """The study (as a spec dict) whose trials the table answers; ``overrides`` replace keys."""
    spec: dict[str, Any] = {
        "name": "kdtable",
        "data": {
            "source": "builtin:rotten_tomatoes",
            "max_train": 320,
            "max_eval": 200,
            "max_test": 200,
            "max_length": 48,
        },
        "teacher": TINY_TEACHER,
        "student": {"kind": "truncate", "num_layers": 2},
        "metrics": {"latency_repeats": 2},
        "training": {"eval_every_steps": EVAL_EVERY, "device": "cpu"},
        "search_space": search_space(),
        "objectives": OBJECTIVES,
        "seed": SEED,
        "n_trials": 50,
        "confirm": {"seeds": 0},
    }
    spec.update(overrides)
    return spec


def grid_configs(axes: Mapping[str, Sequence[float]] = AXES) -> list[dict[str, Any]]:
    """Every grid point as a params dict, in a fixed order."""
    names = list(axes)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes.values())]


def config_key(params: Mapping[str, Any], axes: Mapping[str, Sequence[float]] = AXES) -> str:
    """A grid point's stable key, e.g. ``temperature=2|alpha=0.5|...``."""
    return "|".join(f"{name}={params[name]:g}" for name in axes)


def nearest(
    params: Mapping[str, Any], axes: Mapping[str, Sequence[float]] = AXES
) -> dict[str, Any]:
    """The grid point nearest to ``params`` on every axis (log distance on the log axes)."""
    out: dict[str, Any] = {}
    for name, values in axes.items():
        x = float(params[name])
        if name in LOG_AXES:
            out[name] = min(values, key=lambda v: abs(math.log(v) - math.log(max(x, 1e-30))))
        else:
            out[name] = min(values, key=lambda v: abs(v - x))
    return out
