"""The studies the benchmarks share.

- ``TINY``: the tiny data, teacher and student of ``worker_scaling.py`` (its teacher,
  ``TINY_TEACHER``, is ``search_efficiency.py``'s too); the same setting as ``TINY`` in
  ``tests/conftest.py``, which bench does not import.
- A realistic finished study for ``api_load.py``: the spec, and trials shaped like the ones
  ``search/objective.py`` writes (params with distributions, objective values, every
  ``metric:<name>`` user attr, ``config``, ``student``, ``train_seconds``, intermediate
  vectors, the constraint; ~3% FAIL with ``error``/``traceback``, ~7% PRUNED). No artifacts.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from typing import Any

from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from kdsearch.search.intermediates import INTERMEDIATE_ATTR
from kdsearch.search.objective import build_run_config
from kdsearch.search.spec import StudySpec

# The builtin MiniLM teacher fine-tuned 3 epochs (cached under $KDSEARCH_HOME after the first).
TINY_TEACHER: dict[str, Any] = {
    "model": "builtin:minilm-l6",
    "recipe": {"epochs": 3, "lr": 1.5e-4, "batch_size": 16},
}
TINY: dict[str, Any] = {
    "data": {
        "source": "builtin:rotten_tomatoes",
        "max_train": 320,
        "max_eval": 96,
        "max_length": 48,
    },
    "teacher": TINY_TEACHER,
    "student": {"kind": "truncate", "num_layers": 2},
}

SPEC: dict[str, Any] = {
    "name": "api-load",
    "data": {"source": "builtin:rotten_tomatoes", "max_train": 2000, "max_eval": 500},
    "teacher": {"model": "builtin:minilm-l6"},
    "student": {"kind": "truncate", "num_layers": 3},
    "search_space": {
        "temperature": {"low": 1.0, "high": 8.0, "log": True},
        "alpha": {"low": 0.0, "high": 1.0},
        "lr": {"low": 3e-5, "high": 3e-4, "log": True},
        "epochs": {"low": 1, "high": 3},
        "student_layers": {"low": 2, "high": 4},
    },
    "constraints": [{"metric": "conf_sigma", "max": 0.1}],
}


def _metrics(rng: random.Random, p: dict[str, Any], n_eval: int) -> dict[str, Any]:
    """Plausible metrics for the sampled params (deeper students and mid T do better)."""
    layers, t, alpha = p["student_layers"], p["temperature"], p["alpha"]
    acc = min(0.9, max(0.5, 0.70 + 0.025 * layers - 0.01 * abs(math.log(t) - 1)))
    acc = min(0.9, max(0.5, acc + rng.gauss(0, 0.015)))
    sigma: float | None = max(0.01, 0.04 + 0.06 * alpha + 0.02 * (4 - layers) + rng.gauss(0, 0.01))
    if rng.random() < 0.01:  # fewer than 2 both-correct examples: undefined, flagged
        sigma = None
    ece_s = rng.uniform(0.02, 0.15)
    return {
        "accuracy": acc,
        "f1_macro": acc - rng.uniform(0, 0.02),
        "teacher_accuracy": 0.812,
        "agreement": min(0.99, 0.85 + (acc - 0.74) + rng.gauss(0, 0.02)),
        "conf_sigma": sigma,
        "conf_sigma_defined": sigma is not None,
        "n_both_correct": int(n_eval * acc * 0.9),
        "conf_mae": rng.uniform(0.02, 0.12),
        "conf_bias": rng.gauss(0.02, 0.03),
        "kl_teacher_student": rng.uniform(0.02, 0.3),
        "ece_teacher": 0.05,
        "ece_student": ece_s,
        "ece_gap": abs(ece_s - 0.05),
        "conf_spearman": rng.uniform(0.7, 0.95),
        "params": 11_720_064 + 1_774_464 * layers,
        "latency_ms": round(0.2 + 0.1 * layers + rng.uniform(0, 0.05), 4),
    }


def make_trials(n: int, seed: int) -> list[FrozenTrial]:
    """``n`` finished trials shaped like ``search/objective.py``'s (~3% FAIL, ~7% PRUNED)."""
    rng = random.Random(seed)
    spec = StudySpec.model_validate({**SPEC, "n_trials": n})
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    out = []
    for i in range(n):
        params: dict[str, Any] = {}
        dists: dict[str, BaseDistribution] = {}
        for name, ps in spec.parsed_space().items():
            lo, hi = float(ps.low or 0.0), float(ps.high or 0.0)
            if ps.kind == "int":
                params[name], dists[name] = (
                    rng.randint(int(lo), int(hi)),
                    IntDistribution(int(lo), int(hi)),
                )
                continue
            x = math.exp(rng.uniform(math.log(lo), math.log(hi))) if ps.log else rng.uniform(lo, hi)
            params[name], dists[name] = min(hi, max(lo, x)), FloatDistribution(lo, hi, log=ps.log)
        attrs: dict[str, Any] = {"config": build_run_config(spec, params).model_dump(mode="json")}
        m = _metrics(rng, params, spec.data.max_eval or 500)
        curve = {
            str(50 * (k + 1)): [m["accuracy"] - 0.02 * (3 - k), (m["conf_sigma"] or 1.0) + 0.01]
            for k in range(4)
        }
        roll = rng.random()
        state, values, constraints = TrialState.COMPLETE, None, None
        if roll < 0.03:
            state = TrialState.FAIL
            attrs["error"] = "RuntimeError: CUDA out of memory. Tried to allocate 96.00 MiB"
            attrs["traceback"] = "Traceback (most recent call last):\n" + "  File ...\n" * 60
        elif roll < 0.10:
            state = TrialState.PRUNED
            attrs[INTERMEDIATE_ATTR] = dict(list(curve.items())[: rng.randint(1, 3)])
        else:
            attrs[INTERMEDIATE_ATTR] = curve
            attrs.update({f"metric:{k}": v for k, v in m.items()})
            layers = params["student_layers"]
            attrs["student"] = {
                "kind": "truncate",
                "kept_teacher_layers": list(range(6 - layers, 6)),
                "num_layers": layers,
                "hidden_size": 384,
                "params": m["params"],
            }
            attrs["train_seconds"] = round(rng.uniform(30, 240), 3)
            sigma = m["conf_sigma"]
            values = [m["accuracy"], sigma if sigma is not None else 1.0]
            constraints = {"conf_sigma": spec.constraints[0].violation(sigma)}
        trial = create_trial(
            state=state,
            values=values,
            params=params,
            distributions=dists,
            user_attrs=attrs,
            constraints=constraints,
        )
        trial.datetime_start = start + dt.timedelta(seconds=40 * i)
        seconds = attrs.get("train_seconds", rng.uniform(5, 60))
        trial.datetime_complete = trial.datetime_start + dt.timedelta(seconds=seconds + 3)
        out.append(trial)
    return out
