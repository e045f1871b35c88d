"""The study spec: defaults, validation messages, mapping onto the engine config."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from search.objective import build_run_config, objective_values
from search.spec import Constraint, StudySpec

from .search_helpers import tiny_spec


def test_minimal_spec_has_sensible_defaults() -> None:
    spec = StudySpec.model_validate(
        {"teacher": {"model": "builtin:minilm-l6"}, "data": {"source": "builtin:rotten_tomatoes"}}
    )
    assert spec.metric_names == ["accuracy", "conf_sigma"]
    assert spec.directions == ["maximize", "minimize"]
    assert spec.sampler == "tpe" and spec.pruner.name == "median"
    assert set(spec.search_space) == {"temperature", "alpha", "lr", "epochs"}
    assert spec.keep.policy == "pareto"


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (
            {"search_space": {"temprature": 2}},
            "unknown parameter(s) temprature: searchable parameters are temperature",
        ),
        (
            {"search_space": {"temperature": {"low": 5, "high": 1}}},
            "search_space.temperature: low (5) is above high (1)",
        ),
        ({"search_space": {"lr": {"low": 0, "high": 1, "log": True}}}, "a log range needs low > 0"),
        (
            {"search_space": {"layer_mapping": {"low": 1, "high": 2}}},
            "search_space.layer_mapping is categorical: give 'choices'",
        ),
        (
            {"search_space": {"batch_size": {"low": 8.5, "high": 32}}},
            "search_space.batch_size is an integer",
        ),
        ({"objectives": [{"metric": "acuracy"}]}, "unknown metric 'acuracy': use one of accuracy"),
        ({"objectives": []}, "objectives"),
        (
            {"constraints": [{"metric": "conf_sigma"}]},
            "constraint on 'conf_sigma' needs 'max' or 'min'",
        ),
        ({"sampler": "cmaes"}, "sampler"),
        ({"sampler": "grid"}, "sampler 'grid' needs every parameter fixed or categorical"),
        ({"n_trials": 0}, "n_trials"),
        ({"pruner": {"name": "patient"}}, "pruner.name"),
    ],
)
def test_validation_errors_name_the_field(patch: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        tiny_spec(**patch)
    assert message in str(info.value)


def test_grid_with_categorical_space_is_accepted() -> None:
    spec = tiny_spec(
        sampler="grid",
        search_space={
            "temperature": {"choices": [1.0, 4.0]},
            "layer_mapping": {"choices": ["uniform", [1, 6]]},
            "epochs": 0.5,
        },
    )
    grid = {n: p.grid_values() for n, p in spec.parsed_space().items() if not p.is_fixed}
    assert grid == {"temperature": [1.0, 4.0], "layer_mapping": ["uniform", "1,6"]}


def test_build_run_config_places_every_parameter() -> None:
    spec = tiny_spec()
    cfg = build_run_config(
        spec,
        {
            "temperature": 3.0,
            "alpha": 0.25,
            "lr": 1e-4,
            "epochs": 2.0,
            "student_layers": 3,
            "stage1_lr": 2e-4,
            "batch_size": 16,
            "layer_mapping": [2, 4, 6],
            "mode": "two_stage",
        },
    )
    assert cfg.distill.temperature == 3.0 and cfg.distill.alpha == 0.25
    assert cfg.train.lr == 1e-4 and cfg.train.epochs == 2.0 and cfg.train.batch_size == 16
    assert cfg.train.stage1.lr == 2e-4
    assert cfg.student.num_layers == 3
    assert cfg.distill.layer_mapping == [2, 4, 6]
    assert cfg.distill.mode == "two_stage" and cfg.distill.hidden_weight == 1.0
    assert cfg.data == spec.data and cfg.teacher == spec.teacher


def test_constraint_violation_follows_optuna_convention() -> None:
    c = Constraint(metric="conf_sigma", max=0.1)
    assert c.violation(0.05) == pytest.approx(-0.05)  # feasible: <= 0
    assert c.violation(0.25) == pytest.approx(0.15)
    assert c.violation(None) == 1.0  # undefined counts as infeasible
    both = Constraint(metric="accuracy", min=0.7, max=0.9)
    assert both.violation(0.8) == pytest.approx(-0.1)
    assert both.violation(0.6) == pytest.approx(0.1)


def test_undefined_metric_scores_worst() -> None:
    spec = tiny_spec()
    assert objective_values(spec, {"accuracy": 0.8, "conf_sigma": None}) == [0.8, 1.0]
