"""The sampler registry: every name ``sampler`` accepts, what it means, and its factory.

The spec's allowed names, the study set-up and the docs read this registry; adding a
sampler is its factory plus one :func:`register_sampler` line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import optuna

from .space import is_conditional

if TYPE_CHECKING:
    from .spec import StudySpec

__all__ = ["SamplerDef", "make_sampler", "register_sampler", "sampler_names", "tpe_startup_trials"]


@dataclass(frozen=True)
class SamplerDef:
    """``make(spec, seed)`` builds the Optuna sampler for a study."""

    name: str
    description: str
    make: Callable[[StudySpec, int], optuna.samplers.BaseSampler]


_SAMPLERS: dict[str, SamplerDef] = {}


def register_sampler(sampler: SamplerDef) -> SamplerDef:
    if sampler.name in _SAMPLERS:
        raise ValueError(f"a sampler named {sampler.name!r} is already registered")
    _SAMPLERS[sampler.name] = sampler
    return sampler


def sampler_names() -> tuple[str, ...]:
    return tuple(_SAMPLERS)


def all_samplers() -> list[SamplerDef]:
    return list(_SAMPLERS.values())


def make_sampler(spec: StudySpec, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """Each worker seeds its sampler differently, or two workers would propose twins."""
    try:
        found = _SAMPLERS[spec.sampler]
    except KeyError:
        raise ValueError(
            f"unknown sampler {spec.sampler!r}: use one of {', '.join(_SAMPLERS)}"
        ) from None
    return found.make(spec, spec.seed + 1000 * worker_index)


def tpe_startup_trials(n_trials: int) -> int:
    """Random trials before TPE models the space: a fifth of the budget, between 2 and 5.

    Measured on the tabular KD benchmark (``bench/kdtable/sweep.py``, bench/RESULTS.md): 4 or 5
    start-up trials beat 10 and 20 at 20, 50 and 100-trial budgets; 2 or 3 model too soon."""
    return max(2, min(5, n_trials // 5))


def _tpe(spec: StudySpec, seed: int) -> optuna.samplers.BaseSampler:
    # a conditional space (several student families) is sampled per group of parameters
    # that occur together, so each family's parameters are modelled apart
    grouped = is_conditional(spec.parsed_space())
    return optuna.samplers.TPESampler(
        seed=seed,
        constant_liar=True,
        n_startup_trials=tpe_startup_trials(spec.n_trials),
        multivariate=grouped,
        group=grouped,
    )


def _grid(spec: StudySpec, seed: int) -> optuna.samplers.BaseSampler:
    grid = {n: p.grid_values() for n, p in spec.parsed_space().items() if not p.is_fixed}
    return optuna.samplers.GridSampler(grid, seed=seed)


# --------------------------------------------------------------------------- the built-ins

for _sampler in (
    SamplerDef(
        "tpe",
        "Optuna's TPE (constant liar for parallel workers; the first "
        "max(2, min(5, n_trials // 5)) trials random)",
        _tpe,
    ),
    SamplerDef(
        "nsga2",
        "Optuna's NSGA-II, population 8",
        lambda spec, seed: optuna.samplers.NSGAIISampler(seed=seed, population_size=8),
    ),
    SamplerDef(
        "random",
        "uniform random sampling",
        lambda spec, seed: optuna.samplers.RandomSampler(seed=seed),
    ),
    SamplerDef(
        "gp",
        "Optuna's Gaussian-process sampler",
        lambda spec, seed: optuna.samplers.GPSampler(seed=seed),
    ),
    SamplerDef(
        "grid", "every combination of the (fixed or categorical) parameters, shuffled", _grid
    ),
):
    register_sampler(_sampler)
