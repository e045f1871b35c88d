"""Pareto front, the recommended trial, and leaderboard rows (real optuna)."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from kdsearch.search.leaderboard import (
    is_feasible,
    leaderboard,
    pareto_front,
    recommended_trial,
    trial_row,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

DIST = {"x": FloatDistribution(0.0, 1.0)}


def make(
    number: int,
    acc: float | None = None,
    sigma: float | None = None,
    *,
    state: TrialState = TrialState.COMPLETE,
    constraints: dict[str, float] | None = None,
    extra: dict[str, Any] | None = None,
) -> FrozenTrial:
    attrs: dict[str, Any] = {"metric:accuracy": acc, "metric:conf_sigma": sigma}
    attrs.update(extra or {})
    kwargs: dict[str, Any] = {}
    if state == TrialState.COMPLETE:
        kwargs = {
            "values": [acc if acc is not None else 0.0, sigma if sigma is not None else 1.0],
            "params": {"x": 0.5},
            "distributions": DIST,
        }
    trial = create_trial(state=state, user_attrs=attrs, constraints=constraints, **kwargs)
    trial.number = number
    return trial


# --------------------------------------------------------------------------- feasibility


def test_is_feasible() -> None:
    assert is_feasible(make(0, 0.8, 0.1)) is True
    assert is_feasible(make(0, 0.8, 0.1, constraints={"c": 0.0})) is True
    assert is_feasible(make(0, 0.8, 0.1, constraints={"c": -1.0, "d": 0.0})) is True
    assert is_feasible(make(0, 0.8, 0.1, constraints={"c": -1.0, "d": 0.01})) is False


# --------------------------------------------------------------------------- pareto front


def _objective(constrained: bool) -> Any:
    def objective(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_float("x", 0.0, 1.0)
        y = trial.suggest_float("y", 0.0, 1.0)
        acc = 0.5 + 0.4 * x
        sigma = 0.05 + 0.2 * x * y + 0.05 * (1 - y)
        if constrained:
            trial.set_constraint("conf_sigma_max", sigma - 0.12)  # sigma <= kappa = 0.12
        trial.set_user_attr("metric:accuracy", acc)
        trial.set_user_attr("metric:conf_sigma", sigma)
        if trial.number == 7:
            raise RuntimeError("boom")  # a FAIL trial must not matter
        return acc, sigma

    return objective


@pytest.mark.parametrize("constrained", [False, True])
def test_pareto_front_matches_optuna_best_trials(constrained: bool) -> None:
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=1)
    )
    study.optimize(_objective(constrained), n_trials=40, catch=(RuntimeError,))
    # Duplicates of an existing vector are both on the front, as in Optuna.
    best = study.best_trials
    study.add_trial(
        create_trial(
            values=best[0].values,
            params=best[0].params,
            distributions=best[0].distributions,
            user_attrs=best[0].user_attrs,
            constraints=best[0].constraints,
        )
    )
    trials = study.get_trials(deepcopy=False)
    assert any(t.state == TrialState.FAIL for t in trials)
    ours = {t.number for t in pareto_front(trials, study.directions)}
    theirs = {t.number for t in study.best_trials}
    assert ours == theirs
    assert len(ours) >= 3
    assert 40 in ours
    if constrained:
        assert any(not is_feasible(t) for t in trials if t.state == TrialState.COMPLETE)
        assert all(is_feasible(t) for t in study.best_trials)
        # Without the feasibility filter the front would differ (the best accuracies are
        # infeasible here), so the filter is really exercised.
        stripped = []
        for t in trials:
            if t.state == TrialState.COMPLETE:
                copy = create_trial(values=t.values, params=t.params, distributions=t.distributions)
                copy.number = t.number
                stripped.append(copy)
        unconstrained = {t.number for t in pareto_front(stripped, study.directions)}
        assert unconstrained != ours


def test_pareto_front_hand_cases() -> None:
    directions = [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    trials = [
        make(0, 0.9, 0.2),
        make(1, 0.8, 0.1),
        make(2, 0.8, 0.15),  # dominated by 1
        make(3, 0.95, 0.3),
        make(4, 0.8, 0.1),  # equal to 1: both on the front
        make(5, state=TrialState.PRUNED),
        make(6, state=TrialState.RUNNING),
    ]
    assert [t.number for t in pareto_front(trials, directions)] == [0, 1, 3, 4]
    # Constraints on one trial make the study constrained: infeasible 3 leaves the front.
    trials[3] = make(3, 0.95, 0.3, constraints={"c": 0.5})
    assert [t.number for t in pareto_front(trials, directions)] == [0, 1, 4]
    assert pareto_front([], directions) == []


# --------------------------------------------------------------------------- recommended


INF = {"c": 1.0}
OK = {"c": -1.0}


@pytest.mark.parametrize(
    ("trials", "expected"),
    [
        # highest accuracy wins, whatever its sigma
        ([make(0, 0.80, 0.01), make(1, 0.85, 0.20), make(2, 0.70, 0.00)], 1),
        # accuracy tie -> lower sigma
        ([make(0, 0.85, 0.20), make(1, 0.85, 0.05), make(2, 0.80, 0.01)], 1),
        # accuracy tie, one sigma None -> the number wins
        ([make(0, 0.85, None), make(1, 0.85, 0.30)], 1),
        # accuracy and sigma tie -> lower trial number
        ([make(5, 0.85, 0.1), make(2, 0.85, 0.1), make(9, 0.85, 0.1)], 2),
        # infeasible excluded even if best
        (
            [
                make(0, 0.95, 0.01, constraints=INF),
                make(1, 0.80, 0.10, constraints=OK),
                make(2, 0.75, 0.05, constraints=OK),
            ],
            1,
        ),
        # only non-COMPLETE trials and infeasible ones -> None
        ([make(0, 0.9, 0.1, constraints=INF), make(1, state=TrialState.PRUNED)], None),
        ([make(0, state=TrialState.FAIL), make(1, state=TrialState.RUNNING)], None),
        ([], None),
        # a missing accuracy ranks after any accuracy
        ([make(0, None, 0.01), make(1, 0.5, 0.3)], 1),
        # ... but a lone feasible complete trial is still recommended
        ([make(0, None, 0.01)], 0),
        # pruned trials are never recommended even with a better accuracy attr
        ([make(0, 0.99, 0.01, state=TrialState.PRUNED), make(1, 0.6, 0.2)], 1),
    ],
)
def test_recommended_trial(trials: list[FrozenTrial], expected: int | None) -> None:
    got = recommended_trial(trials)
    assert (got.number if got is not None else None) == expected


def test_the_final_choice_overrides_the_rule() -> None:
    trials = [make(0, 0.9, 0.1), make(1, 0.8, 0.1), make(2, 0.7, 0.1)]
    assert recommended_trial(trials, {"recommended": 1}).number == 1  # type: ignore[union-attr]
    # no final choice (the study has not ended, or nothing qualified): THE RULE
    assert recommended_trial(trials, {"recommended": None}).number == 0  # type: ignore[union-attr]
    assert recommended_trial(trials, None).number == 0  # type: ignore[union-attr]


def test_confirmed_means_rank_by_the_rule() -> None:
    from kdsearch.search.final import _confirmed_key

    means = {
        3: {"accuracy": 0.80, "conf_sigma": 0.2},
        5: {"accuracy": 0.82, "conf_sigma": 0.3},
        7: {"accuracy": 0.82, "conf_sigma": 0.1},
        8: {"conf_sigma": 0.01},
    }
    order = sorted(means, key=lambda n: _confirmed_key(n, means[n]))
    assert order == [7, 5, 3, 8]


# --------------------------------------------------------------------------- rows


def test_trial_row() -> None:
    trial = make(3, 0.8, None, constraints={"c": 0.2}, extra={"error": None, "other": 1})
    row = trial_row(trial, {3})
    assert row == {
        "number": 3,
        "state": "COMPLETE",
        "method": None,  # no stored config
        "params": {"x": 0.5},
        "metrics": {"accuracy": 0.8, "conf_sigma": None},
        "values": [0.8, 1.0],
        "pareto": True,
        "feasible": False,
        "duration_s": row["duration_s"],
        "error": None,
        "test": None,
        "confirmed": None,
        "intervals": None,
    }
    assert isinstance(row["duration_s"], float) and row["duration_s"] >= 0.0
    # the study's final results fill in this trial's test metrics and confirmation only
    final = {
        "test": {"3": {"accuracy": 0.75}, "4": {"accuracy": 0.7}},
        "confirmed": {"3": {"seeds": [1, 2], "mean": {"accuracy": 0.78}}},
        "intervals": {"3": {"accuracy": {"low": 0.7, "high": 0.8}}},
    }
    with_final = trial_row(trial, {3}, final)
    assert with_final["test"] == {"accuracy": 0.75}
    assert with_final["confirmed"] == {"seeds": [1, 2], "mean": {"accuracy": 0.78}}
    assert with_final["intervals"] == {"accuracy": {"low": 0.7, "high": 0.8}}
    assert trial_row(make(9, 0.5, 0.1), set(), final)["test"] is None
    failed = make(4, state=TrialState.FAIL, extra={"error": "CUDA out of memory"})
    assert trial_row(failed, {3})["error"] == "CUDA out of memory"
    assert trial_row(failed, {3})["pareto"] is False
    running = trial_row(make(5, state=TrialState.RUNNING), set())
    assert running["duration_s"] is None
    assert running["values"] is None
    assert running["state"] == "RUNNING"


@pytest.fixture
def board_study() -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "conf_sigma"])
    study.add_trials(
        [
            make(0, 0.80, 0.10),
            make(1, 0.90, None),
            make(2, None, None, state=TrialState.FAIL, extra={"error": "boom"}),
            make(3, 0.70, 0.05),
            make(4, 0.90, 0.20),
            make(5, None, None, state=TrialState.PRUNED),
        ]
    )
    return study


def _numbers(rows: list[dict[str, Any]]) -> list[int]:
    return [r["number"] for r in rows]


def test_leaderboard_default_order_and_flags(board_study: optuna.Study) -> None:
    rows = leaderboard(board_study)
    assert _numbers(rows) == [0, 1, 2, 3, 4, 5]
    pareto = {r["number"] for r in rows if r["pareto"]}
    assert pareto == {t.number for t in board_study.best_trials}
    assert rows[2]["error"] == "boom" and rows[2]["state"] == "FAIL"


def test_leaderboard_sorting(board_study: optuna.Study) -> None:
    # descending: 1 and 4 tie at 0.90 (number order kept), None accuracies last
    assert _numbers(leaderboard(board_study, sort="accuracy")) == [1, 4, 0, 3, 2, 5]
    assert _numbers(leaderboard(board_study, sort="accuracy", descending=False)) == [
        3,
        0,
        1,
        4,
        2,
        5,
    ]
    # None sigma last in both orders
    assert _numbers(leaderboard(board_study, sort="conf_sigma", descending=False)) == [
        3,
        0,
        4,
        1,
        2,
        5,
    ]
    assert _numbers(leaderboard(board_study, sort="conf_sigma")) == [4, 0, 3, 1, 2, 5]
    assert _numbers(leaderboard(board_study, sort="number")) == [5, 4, 3, 2, 1, 0]
    assert _numbers(leaderboard(board_study, sort="number", descending=False)) == [
        0,
        1,
        2,
        3,
        4,
        5,
    ]
    assert len(leaderboard(board_study, sort="duration_s")) == 6


def test_leaderboard_state_filter(board_study: optuna.Study) -> None:
    assert _numbers(leaderboard(board_study, states={"COMPLETE", "FAIL"})) == [0, 1, 2, 3, 4]
    assert _numbers(leaderboard(board_study, states={"pruned"})) == [5]
    assert _numbers(leaderboard(board_study, sort="accuracy", states={"COMPLETE"})) == [
        1,
        4,
        0,
        3,
    ]
    assert leaderboard(board_study, states=set()) == []
    with pytest.raises(ValueError, match="DONE"):
        leaderboard(board_study, states={"DONE"})


def test_leaderboard_unknown_sort_metric(board_study: optuna.Study) -> None:
    with pytest.raises(ValueError, match="f1_macro") as err:
        leaderboard(board_study, sort="f1_macro")
    message = str(err.value)
    for allowed in ("accuracy", "conf_sigma", "number", "duration_s"):
        assert allowed in message


def test_leaderboard_sort_by_objective_name_on_empty_study() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "conf_sigma"])
    assert leaderboard(study, sort="accuracy") == []
    with pytest.raises(ValueError, match="unknown sort key"):
        leaderboard(study, sort="latency_ms")
