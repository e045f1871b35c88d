"""The study spec: defaults, validation messages, mapping onto the engine config."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kdsearch.search.objective import build_run_config, objective_values
from kdsearch.search.spec import Constraint, StudySpec

from .search_helpers import tiny_spec


def test_minimal_spec_has_sensible_defaults() -> None:
    spec = StudySpec.model_validate(
        {"teacher": {"model": "builtin:minilm-l6"}, "data": {"source": "builtin:rotten_tomatoes"}}
    )
    assert spec.metric_names == ["accuracy", "conf_sigma"]
    assert spec.directions == ["maximize", "minimize"]
    assert spec.sampler == "tpe" and spec.pruner.name == "auto"
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
        (
            {"metrics": {"decision_thresholds": [0.9, 1.2]}},
            "metrics.decision_thresholds: thresholds must lie strictly between 0 and 1",
        ),
        (
            {"training": {"device": "gpu"}},
            "training.device 'gpu' is not one of auto, cpu, cuda, cuda:N",
        ),
        (
            {"search_space": {"lr": {"low": 1e-5, "high": 1e-3, "log": "false"}}},
            "search_space.lr.log must be true or false",
        ),
        ({"objectives": []}, "objectives"),
        (
            {"constraints": [{"metric": "conf_sigma"}]},
            "constraint on 'conf_sigma' needs 'max' or 'min'",
        ),
        ({"sampler": "cmaes"}, "sampler"),
        ({"sampler": "grid"}, "sampler 'grid' needs every parameter fixed or categorical"),
        (
            {"sampler": "grid", "n_trials": 7, "search_space": {"alpha": {"choices": [0.0, 1.0]}}},
            "n_trials (7) exceeds the grid's 2 combinations: set n_trials to at most 2",
        ),
        ({"n_trials": 0}, "n_trials"),
        (
            {"search_space": {"layer_mapping": {"choices": ["uniform", "skip"]}}},
            "search_space.layer_mapping: the value 'skip' is not allowed (distill.layer_mapping:"
            " Value error, unknown distill.layer_mapping 'skip': use one of first, last, "
            "pkd_last, pkd_skip, uniform",
        ),
        (
            {"search_space": {"student_layers": {"low": 1, "high": 8}}},
            "search_space.student_layers: a student of 8 layers is deeper than the teacher "
            "builtin:minilm-l6 (6 layers): use at most 6",
        ),
        (
            {"student": {"kind": "truncate", "keep_layers": [2, 7]}},
            "student.keep_layers: teacher layer 7 does not exist; builtin:minilm-l6 has 6 layers",
        ),
        (
            {"metrics": {"reference_class": 2}},
            "metrics.reference_class: builtin:rotten_tomatoes has 2 labels (ids 0..1)",
        ),
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


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random", "gp", "grid"])
def test_every_sampler_proposes_valid_settings(sampler: str) -> None:
    import optuna

    from kdsearch.search.pruners import make_pruner
    from kdsearch.search.samplers import make_sampler

    space = (
        {"temperature": {"choices": [1.0, 2.0, 4.0]}, "alpha": {"choices": [0.0, 0.5]}, "epochs": 1}
        if sampler == "grid"
        else None
    )
    extra = {"search_space": space, "n_trials": 6} if space else {}
    spec = tiny_spec(sampler=sampler, **extra)
    study = optuna.create_study(
        directions=spec.directions, sampler=make_sampler(spec), pruner=make_pruner(spec)
    )
    parsed = spec.parsed_space()

    def objective(trial: optuna.Trial) -> list[float]:
        params = {n: p.suggest(trial) for n, p in parsed.items()}
        cfg = build_run_config(spec, params)  # every proposal is a valid engine config
        assert 1.0 <= cfg.distill.temperature <= 4.0
        return [0.5 + 0.01 * trial.number, 0.1 - 0.01 * trial.number]

    study.optimize(objective, n_trials=6)
    assert len(study.get_trials()) == 6
    if sampler == "grid":
        seen = {(t.params["temperature"], t.params["alpha"]) for t in study.get_trials()}
        assert len(seen) == 6  # the whole 3 x 2 grid, no repeats
