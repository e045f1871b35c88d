"""Progress-based pruning rules (dominance, Pareto rank), the reporter objectives call, and
Optuna's single-objective pruners (real optuna)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState, create_trial

from kdsearch.search.dominance import dominates, front_indices, pareto_ranks
from kdsearch.search.intermediates import (
    BUDGET_ATTR,
    INTERMEDIATE_ATTR,
    intermediate_vectors,
    progress_curve,
    record_intermediate,
    vector_at,
)
from kdsearch.search.pruners import make_progress_pruner, make_pruner, make_single_objective_pruner
from kdsearch.search.pruning import (
    DominancePruner,
    IntermediateReporter,
    ParetoRankPruner,
    estimate_saved_fraction,
)
from kdsearch.search.samplers import make_sampler, tpe_startup_trials
from kdsearch.search.spec import PrunerSpec, StudySpec

optuna.logging.set_verbosity(optuna.logging.WARNING)

MAX, MIN = StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE
ACC_SIGMA = [MAX, MIN]  # (accuracy up, conf_sigma down)


def finished(
    vectors: dict[int, list[float]],
    state: TrialState = TrialState.COMPLETE,
    budget: int | None = None,
) -> FrozenTrial:
    """A hand-built trial holding intermediate vectors (and its budget in optimiser steps),
    as the objective stores them."""
    attrs: dict[str, Any] = {INTERMEDIATE_ATTR: {str(s): v for s, v in vectors.items()}}
    if budget is not None:
        attrs[BUDGET_ATTR] = budget
    kwargs: dict[str, Any] = {}
    if state == TrialState.COMPLETE:
        kwargs = {
            "values": vectors[max(vectors)],
            "params": {"x": 0.5},
            "distributions": {"x": FloatDistribution(0.0, 1.0)},
        }
    return create_trial(state=state, user_attrs=attrs, **kwargs)


# --------------------------------------------------------------------------- dominates


@pytest.mark.parametrize(
    ("a", "b", "directions", "expected"),
    [
        ([0.9, 0.1], [0.8, 0.2], ACC_SIGMA, True),  # better in both
        ([0.9, 0.1], [0.8, 0.1], ACC_SIGMA, True),  # better in one, equal in other
        ([0.9, 0.2], [0.8, 0.1], ACC_SIGMA, False),  # trade-off
        ([0.8, 0.2], [0.9, 0.1], ACC_SIGMA, False),  # dominated, not dominating
        ([0.9, 0.1], [0.9, 0.1], ACC_SIGMA, False),  # equal vectors
        ([1.0, 2.0], [2.0, 3.0], [MIN, MIN], True),
        ([1.0, 2.0], [2.0, 3.0], [MAX, MAX], False),
        ([2.0, 3.0], [1.0, 2.0], [MAX, MAX], True),
        ([2.0], [1.0], [MAX], True),
        ([2.0], [2.0], [MIN], False),
        ([0.9, 0.1], [0.9, math.nan], ACC_SIGMA, True),  # NaN is the worst value
        ([0.9, math.nan], [0.9, 0.1], ACC_SIGMA, False),
    ],
)
def test_dominates(
    a: list[float], b: list[float], directions: list[StudyDirection], expected: bool
) -> None:
    assert dominates(a, b, directions) is expected


def test_dominates_length_mismatch() -> None:
    with pytest.raises(ValueError, match="cannot be compared"):
        dominates([1.0, 2.0], [1.0], ACC_SIGMA)
    with pytest.raises(ValueError, match="cannot be compared on 2 objectives"):
        dominates([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], ACC_SIGMA)


def test_front_is_rank_zero_and_exactly_the_undominated() -> None:
    rng = np.random.default_rng(3)
    for _ in range(30):
        # coarse values: ties and duplicates happen; now and then a missing value
        vecs: list[list[float | None]] = [
            [float(x) for x in rng.integers(0, 5, 2)] for _ in range(int(rng.integers(1, 25)))
        ]
        if rng.random() < 0.5:
            vecs[int(rng.integers(len(vecs)))][1] = None
        front = front_indices(vecs, ACC_SIGMA)
        assert front == [i for i, r in enumerate(pareto_ranks(vecs, ACC_SIGMA)) if r == 0]
        for i, v in enumerate(vecs):
            beaten = any(dominates(w, v, ACC_SIGMA) for w in vecs)
            assert (i in front) is not beaten


def test_dominance_is_written_once() -> None:
    """The leaderboard, the pruning rules and the keep policy all use search/dominance.py."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    defined = []
    for folder in ("distill", "search", "service"):
        for path in (root / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef) and "dominat" in node.name:
                    defined.append(f"{path.relative_to(root)}:{node.name}")
    assert sorted(defined) == [
        "search/dominance.py:_dominates_loss",
        "search/dominance.py:dominates",
    ]


# --------------------------------------------------------------------------- intermediates


def test_record_intermediate_merges_and_reads_back() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    trial = study.ask()
    record_intermediate(trial, 1, [0.6, 0.2])
    record_intermediate(trial, 2, [0.7, math.nan])
    record_intermediate(trial, 1, [0.65, 0.19])  # replaces step 1
    assert trial.user_attrs[INTERMEDIATE_ATTR] == {"1": [0.65, 0.19], "2": [0.7, None]}
    with pytest.raises(ValueError, match="2 objectives"):
        record_intermediate(trial, 3, [0.1])
    with pytest.raises(ValueError, match="step"):
        record_intermediate(trial, -1, [0.1, 0.2])
    study.tell(trial, [0.7, 0.1])
    frozen = study.trials[0]
    vectors = intermediate_vectors(frozen)
    assert list(vectors) == [1, 2]
    assert vectors[1] == [0.65, 0.19]
    assert vectors[2][0] == 0.7 and math.isnan(vectors[2][1])


def test_intermediate_vectors_falls_back_to_reported_values() -> None:
    trial = create_trial(state=TrialState.PRUNED, intermediate_values={0: 0.5, 3: 0.7, 1: 0.6})
    assert intermediate_vectors(trial) == {0: [0.5], 1: [0.6], 3: [0.7]}
    assert intermediate_vectors(create_trial(state=TrialState.PRUNED)) == {}


# --------------------------------------------------------------------------- DominancePruner


# Four finished trials at steps 1 and 2 (accuracy, conf_sigma).
PEERS = [
    finished({1: [0.80, 0.10], 2: [0.85, 0.08]}),
    finished({1: [0.75, 0.12], 2: [0.82, 0.09]}),
    finished({1: [0.70, 0.05], 2: [0.78, 0.04]}),
    finished({1: [0.60, 0.30]}, state=TrialState.PRUNED),
]


def test_pruned_when_dominated_by_exactly_k() -> None:
    pruner = DominancePruner(min_trials=4, min_dominating=2)
    # At step 1, [0.72, 0.11] is dominated by PEERS[0] only (PEERS[1] has a worse sigma).
    v = [0.72, 0.11]
    assert [dominates(intermediate_vectors(t)[1], v, ACC_SIGMA) for t in PEERS] == [
        True,
        False,
        False,
        False,
    ]
    # [0.72, 0.13]: dominated by PEERS[0] and PEERS[1] (0.75 >= 0.72, 0.12 <= 0.13).
    v2 = [0.72, 0.13]
    assert [dominates(intermediate_vectors(t)[1], v2, ACC_SIGMA) for t in PEERS] == [
        True,
        True,
        False,
        False,
    ]
    assert pruner.should_prune_vector(v2, 1, PEERS, ACC_SIGMA) is True
    # Dominated by k-1 = 1 trial: kept.
    assert pruner.should_prune_vector(v, 1, PEERS, ACC_SIGMA) is False
    # With k = 1 the same vector is pruned.
    assert DominancePruner(4, 1).should_prune_vector(v, 1, PEERS, ACC_SIGMA) is True
    # Dominated by three trials, k = 3: pruned; k = 4: kept.
    v3 = [0.65, 0.2]
    assert DominancePruner(4, 3).should_prune_vector(v3, 1, PEERS, ACC_SIGMA) is True
    assert DominancePruner(4, 4).should_prune_vector(v3, 1, PEERS, ACC_SIGMA) is False
    # A Pareto-optimal vector is never pruned.
    assert DominancePruner(1, 1).should_prune_vector([0.9, 0.01], 1, PEERS, ACC_SIGMA) is False


def test_min_trials_gate_and_missing_steps_ignored() -> None:
    v = [0.5, 0.5]  # dominated by every peer at every step
    # Step 1: four peers have a vector -> min_trials=4 reached.
    assert DominancePruner(4, 2).should_prune_vector(v, 1, PEERS, ACC_SIGMA) is True
    assert DominancePruner(5, 2).should_prune_vector(v, 1, PEERS, ACC_SIGMA) is False
    # Step 2: the pruned trial has no vector there -> only three peers count.
    assert DominancePruner(4, 2).should_prune_vector(v, 2, PEERS, ACC_SIGMA) is False
    assert DominancePruner(3, 2).should_prune_vector(v, 2, PEERS, ACC_SIGMA) is True
    assert DominancePruner(3, 4).should_prune_vector(v, 2, PEERS, ACC_SIGMA) is False
    # Step 3: nobody recorded it.
    assert DominancePruner(1, 1).should_prune_vector(v, 3, PEERS, ACC_SIGMA) is False


def test_warmup_gate() -> None:
    v = [0.5, 0.5]
    pruner = DominancePruner(min_trials=3, min_dominating=2, warmup_steps=2)
    assert pruner.should_prune_vector(v, 1, PEERS, ACC_SIGMA) is False  # 1 < warmup
    assert pruner.should_prune_vector(v, 2, PEERS, ACC_SIGMA) is True


def test_running_and_failed_trials_ignored() -> None:
    v = [0.5, 0.5]
    others = [
        create_trial(state=TrialState.RUNNING, user_attrs={INTERMEDIATE_ATTR: {"1": [0.9, 0.0]}}),
        create_trial(state=TrialState.FAIL, user_attrs={INTERMEDIATE_ATTR: {"1": [0.9, 0.0]}}),
    ]
    pruner = DominancePruner(min_trials=1, min_dominating=1)
    assert pruner.should_prune_vector(v, 1, others, ACC_SIGMA) is False
    assert pruner.should_prune_vector(v, 1, [*others, PEERS[3]], ACC_SIGMA) is True


def test_should_prune_reads_the_study_and_excludes_running() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trials(PEERS)
    running = study.ask()  # a RUNNING trial with a great vector must not count
    record_intermediate(running, 1, [0.99, 0.0])
    me = study.ask()
    pruner = DominancePruner(min_trials=4, min_dominating=2)
    assert pruner.should_prune(study, me.number, 1, [0.72, 0.13]) is True
    assert pruner.should_prune(study, me.number, 1, [0.72, 0.11]) is False
    assert DominancePruner(5, 1).should_prune(study, me.number, 1, [0.1, 0.9]) is False


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"min_trials": 0}, "min_trials"),
        ({"min_dominating": 0}, "min_dominating"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"min_trials": 2.5}, "min_trials"),
        ({"min_dominating": True}, "min_dominating"),
    ],
)
def test_pruner_validation(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        DominancePruner(**kwargs)


def test_vector_length_must_match_directions() -> None:
    with pytest.raises(ValueError, match="objectives"):
        DominancePruner().should_prune_vector([0.5], 1, PEERS, ACC_SIGMA)


# --------------------------------------------------------------------------- end to end

MAX_STEPS = 5


def test_end_to_end_multi_objective_study() -> None:
    pruner = DominancePruner(min_trials=4, min_dominating=2, warmup_steps=1)
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=3)
    )
    steps_run: dict[int, int] = {}

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        quality = trial.suggest_float("quality", 0.0, 1.0)
        calib = trial.suggest_float("calib", 0.0, 1.0)
        vector = [0.0, 0.0]
        for step in range(1, MAX_STEPS + 1):
            # "Training": both objectives improve every step, scaled by the trial's params;
            # accuracy and sigma trade off through `quality`.
            frac = step / MAX_STEPS
            vector = [0.5 + 0.45 * quality * frac, 0.3 - 0.25 * (1 - quality) * calib * frac]
            record_intermediate(trial, step, vector)
            steps_run[trial.number] = step
            if pruner.should_prune(study, trial.number, step, vector):
                raise optuna.TrialPruned()
        return vector[0], vector[1]

    study.optimize(objective, n_trials=30)
    trials = study.trials
    assert len(trials) == 30
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert pruned, "some trials must be pruned"
    assert len(pruned) + len(complete) == 30
    # Optuna 5 stores no values for a pruned multi-objective trial.
    assert all(t.values is None for t in pruned)

    front = study.best_trials
    front_numbers = {t.number for t in front}
    for t in pruned:
        assert t.number not in front_numbers
        last = intermediate_vectors(t)[steps_run[t.number]]
        assert max(intermediate_vectors(t)) == steps_run[t.number]
        # Its final vector is strictly dominated by a trial of the final front.
        assert any(dominates(f.values, last, study.directions) for f in front)

    for t in complete:
        assert max(intermediate_vectors(t)) == MAX_STEPS
        assert intermediate_vectors(t)[MAX_STEPS] == t.values

    saved_steps = sum(MAX_STEPS - steps_run[t.number] for t in pruned)
    expected = saved_steps / (30 * MAX_STEPS)
    assert saved_steps > 0
    assert estimate_saved_fraction(trials, MAX_STEPS) == pytest.approx(expected)
    assert 0.0 < estimate_saved_fraction(trials, MAX_STEPS) < 1.0


# --------------------------------------------------------------------------- savings


def test_estimate_saved_fraction_hand_cases() -> None:
    trials = [
        finished({1: [0.5, 0.5], 2: [0.6, 0.4], 3: [0.7, 0.3], 4: [0.8, 0.2]}),
        finished({1: [0.5, 0.5]}, state=TrialState.PRUNED),  # saved 3
        finished({1: [0.5, 0.5], 2: [0.5, 0.5]}, state=TrialState.PRUNED),  # saved 2
        create_trial(state=TrialState.PRUNED, intermediate_values={1: 0.3}),  # single obj: 3
        create_trial(state=TrialState.PRUNED),  # pruned before any step: saved 4
        create_trial(state=TrialState.FAIL),  # not counted
        create_trial(state=TrialState.RUNNING),  # not counted
    ]
    assert estimate_saved_fraction(trials, 4) == pytest.approx((3 + 2 + 3 + 4) / (5 * 4))
    assert estimate_saved_fraction([], 4) == 0.0
    assert estimate_saved_fraction(trials[:1], 4) == 0.0
    with pytest.raises(ValueError, match="max_steps"):
        estimate_saved_fraction(trials, 0)


# --------------------------------------------------------------------------- single objective


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("median", optuna.pruners.MedianPruner),
        ("hyperband", optuna.pruners.HyperbandPruner),
        ("successive_halving", optuna.pruners.SuccessiveHalvingPruner),
        ("none", optuna.pruners.NopPruner),
    ],
)
def test_make_single_objective_pruner(name: str, cls: type) -> None:
    assert type(make_single_objective_pruner(name)) is cls
    assert type(make_single_objective_pruner("auto")) is optuna.pruners.MedianPruner


def test_make_single_objective_pruner_settings() -> None:
    median = make_single_objective_pruner("median")
    assert isinstance(median, optuna.pruners.MedianPruner)
    assert median._n_startup_trials == 2
    assert median._n_warmup_steps == 0
    hyperband = make_single_objective_pruner("hyperband")
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert hyperband._min_resource == 1
    assert hyperband._reduction_factor == 3


def test_make_single_objective_pruner_unknown() -> None:
    with pytest.raises(ValueError, match="unknown pruner 'asha': use one of auto, dominance"):
        make_single_objective_pruner("asha")
    with pytest.raises(ValueError, match="use one of median, hyperband, successive_halving, none"):
        make_single_objective_pruner("pareto_rank")  # a progress rule, not Optuna's


def test_median_pruner_prunes_a_single_objective_study() -> None:
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=make_single_objective_pruner("median"),
    )

    def objective(trial: optuna.Trial) -> float:
        q = trial.suggest_float("q", 0.0, 1.0)
        value = 0.0
        for step in range(1, MAX_STEPS + 1):
            value = q * step
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    study.optimize(objective, n_trials=20)
    n_pruned = sum(t.state == TrialState.PRUNED for t in study.trials)
    assert n_pruned > 0
    assert estimate_saved_fraction(study.trials, MAX_STEPS) > 0.0


# --------------------------------------------------------------------------- progress


def test_progress_curve_and_interpolation() -> None:
    t = finished({10: [0.6, 0.3], 20: [0.7, 0.2], 40: [0.8, 0.1]}, budget=40)
    curve = progress_curve(t)
    assert [p for p, _ in curve] == [0.25, 0.5, 1.0]
    assert vector_at(curve, 0.5) == [0.7, 0.2]
    # halfway between 0.5 and 1.0
    assert vector_at(curve, 0.75) == pytest.approx([0.75, 0.15])
    assert vector_at(curve, 0.1) is None  # before its first evaluation
    assert vector_at([(0.25, [0.6, 0.3])], 0.5) is None  # a peer stopped at 25 %
    assert progress_curve(finished({1: [0.5, 0.5]})) == []  # no budget recorded


def test_dominated_at_half_progress_is_pruned_although_steps_differ() -> None:
    """Peers trained 40 steps (batch 16) and 80 steps (two epochs); the trial trains 10
    (batch 64). No peer ever evaluated at step 5, the trial's 50 % point, yet the rule
    compares them there."""
    peers = [
        finished({20: [0.80, 0.10], 40: [0.84, 0.08]}, budget=40),
        finished({20: [0.78, 0.12], 40: [0.82, 0.09]}, budget=40),
        finished({20: [0.76, 0.11], 40: [0.80, 0.10], 80: [0.83, 0.07]}, budget=80),  # 25/50/100
        finished({10: [0.70, 0.20]}, budget=40, state=TrialState.PRUNED),  # stopped at 25 %
    ]
    trial_step, trial_budget = 5, 10
    assert all(trial_step not in intermediate_vectors(p) for p in peers)
    dominated = [0.70, 0.15]
    pruner = DominancePruner(min_trials=3, min_dominating=2)
    assert pruner.should_prune_vector(dominated, trial_step, peers, ACC_SIGMA, trial_budget)
    # on raw steps the rule would find no peer at step 5 and keep it
    assert not pruner.should_prune_vector(dominated, trial_step, peers, ACC_SIGMA)
    # a vector no peer dominates at 50 % is kept
    assert not pruner.should_prune_vector([0.81, 0.07], 5, peers, ACC_SIGMA, 10)
    # the third peer counts at 50 %: its 2nd evaluation (step 40 of 80) is 0.5 exactly
    assert len(pruner.peer_vectors(5, peers, 2, 10)) == 3
    # a warm-up beyond 50 % holds the decision back
    warm = DominancePruner(min_trials=3, min_dominating=2, warmup_progress=0.6)
    assert not warm.should_prune_vector(dominated, 5, peers, ACC_SIGMA, 10)
    assert warm.should_prune_vector([0.6, 0.3], 7, peers, ACC_SIGMA, 10)


def test_pareto_ranks_and_the_rank_rule() -> None:
    peers = [[0.9, 0.2], [0.8, 0.1], [0.7, 0.3], [0.6, 0.4]]
    assert pareto_ranks(peers, ACC_SIGMA) == [0, 0, 1, 2]
    assert pareto_ranks([], ACC_SIGMA) == []
    rule = ParetoRankPruner(min_trials=4, percentile=50)
    # [0.65, 0.35]: front 2 (dominated by [0.7, 0.3]); 3 of 4 peers are in better fronts
    assert rule.decide([0.65, 0.35], peers, ACC_SIGMA) is True
    # [0.75, 0.25]: front 1 (dominated by [0.8, 0.1]); 2 of 4 better: 50 % -> pruned
    assert rule.decide([0.75, 0.25], peers, ACC_SIGMA) is True
    assert ParetoRankPruner(4, percentile=75).decide([0.75, 0.25], peers, ACC_SIGMA) is False
    # on the front: never pruned
    assert rule.decide([0.95, 0.3], peers, ACC_SIGMA) is False
    with pytest.raises(ValueError, match="percentile"):
        ParetoRankPruner(percentile=0)


def test_rank_rule_at_progress_in_a_study() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for acc, sigma in [(0.8, 0.1), (0.82, 0.12), (0.78, 0.09), (0.7, 0.2)]:
        t = study.ask()
        t.set_user_attr(BUDGET_ATTR, 8)
        record_intermediate(t, 4, [acc - 0.05, sigma + 0.02])
        record_intermediate(t, 8, [acc, sigma])
        study.tell(t, [acc, sigma])
    me = study.ask()
    rule = ParetoRankPruner(min_trials=4, percentile=50)
    # at 50 % of a 30-step budget (step 15) the peers are read at their step 4
    assert rule.should_prune(study, me.number, 15, [0.6, 0.3], 30) is True
    assert rule.should_prune(study, me.number, 15, [0.9, 0.05], 30) is False


def _spec(**pruner: Any) -> StudySpec:
    return StudySpec.model_validate(
        {
            "teacher": {"model": "builtin:minilm-l6"},
            "data": {"source": "builtin:rotten_tomatoes"},
            "pruner": pruner,
        }
    )


def test_spec_chooses_the_rule() -> None:
    d = make_progress_pruner(_spec(name="dominance", min_dominating=3).pruner, 2)
    assert isinstance(d, DominancePruner) and d.min_dominating == 3
    r = make_progress_pruner(_spec(name="pareto_rank", percentile=25).pruner, 2)
    assert isinstance(r, ParetoRankPruner) and r.percentile == 25
    auto = make_progress_pruner(_spec().pruner, 2)
    assert isinstance(auto, ParetoRankPruner) and auto.percentile == 75
    assert isinstance(make_progress_pruner(_spec(name="median").pruner, 2), DominancePruner)
    assert make_progress_pruner(_spec(name="none").pruner, 2) is None
    assert make_progress_pruner(PrunerSpec(name="median"), 1) is None
    # single objective: Optuna's median for auto, ours when named
    one = {"objectives": [{"metric": "accuracy"}]}
    spec = StudySpec.model_validate({**_spec().model_dump(), **one})
    assert isinstance(make_pruner(spec), optuna.pruners.MedianPruner)
    spec = StudySpec.model_validate({**_spec(name="pareto_rank").model_dump(), **one})
    assert isinstance(make_pruner(spec), optuna.pruners.NopPruner)
    with pytest.raises(ValueError, match="'hyperband' prunes on one objective"):
        _spec(name="hyperband")


@pytest.mark.parametrize(
    ("n", "expected"), [(1, 2), (10, 2), (12, 2), (20, 4), (25, 5), (50, 5), (500, 5)]
)
def test_tpe_startup_follows_the_budget(n: int, expected: int) -> None:
    assert tpe_startup_trials(n) == expected
    spec = StudySpec.model_validate({**_spec().model_dump(), "n_trials": n})
    sampler = make_sampler(spec)
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert sampler._n_startup_trials == expected


def test_reporter_records_budget_and_prunes_on_progress() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for acc in (0.8, 0.81, 0.82, 0.83):
        t = study.ask()
        t.set_user_attr(BUDGET_ATTR, 20)
        record_intermediate(t, 10, [acc, 0.1])
        record_intermediate(t, 20, [acc, 0.1])
        study.tell(t, [acc, 0.1])
    report = IntermediateReporter(DominancePruner(min_trials=4, min_dominating=2), 2)
    trial = study.ask()
    report(trial, 3, 6, [0.9, 0.05], False)  # 50 %: better than all, kept
    assert trial.user_attrs[BUDGET_ATTR] == 6
    with pytest.raises(optuna.TrialPruned, match="50% of its budget"):
        report(trial, 3, 6, [0.5, 0.3], False)
    # the final evaluation is recorded, never pruned
    report(trial, 6, 6, [0.5, 0.3], True)
    assert intermediate_vectors(study.trials[-1])[6] == [0.5, 0.3]
