"""Hand-computed checks of distill.metrics (no models, no scipy needed)."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from kdsearch.distill import metrics as M
from kdsearch.distill.metric_registry import computed_names, confidence_metrics
from kdsearch.distill.metrics import (
    SigmaResult,
    accuracy,
    agreement,
    conf_bias,
    conf_mae,
    conf_sigma,
    conf_spearman,
    ece,
    ece_gap,
    f1_macro,
    kl_teacher_student,
    reliability_bins,
    softmax,
)

EXPECTED_KEYS = [
    "accuracy",
    "f1_macro",
    "teacher_accuracy",
    "agreement",
    "conf_sigma",
    "conf_sigma_defined",
    "n_both_correct",
    "decision_flip_rate",
    "conf_mae",
    "conf_bias",
    "kl_teacher_student",
    "ece_teacher",
    "ece_student",
    "ece_gap",
    "conf_spearman",
]


def binary(p_class1: list[float]) -> np.ndarray:
    """Binary probabilities [1 - p, p] from p(class 1); for p >= .5 the max is exactly p."""
    p = np.asarray(p_class1, dtype=np.float64)
    return np.stack([1.0 - p, p], axis=1)


# --------------------------------------------------------------------------- softmax


def test_softmax_stable_and_float64() -> None:
    p = softmax(np.array([[1000.0, 1000.0], [0.0, math.log(3.0)], [-1e4, 0.0]], dtype=np.float32))
    assert p.dtype == np.float64
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p[0], [0.5, 0.5])
    np.testing.assert_allclose(p[1], [0.25, 0.75])
    np.testing.assert_allclose(p[2], [0.0, 1.0])
    np.testing.assert_allclose(p.sum(axis=1), 1.0)


# --------------------------------------------------------------------------- identical models


def test_identical_teacher_and_student() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 3)) * 3
    labels = rng.integers(0, 3, size=200)
    p = softmax(logits)

    sigma = conf_sigma(p, p, labels)
    assert sigma.defined and sigma.value == 0.0
    assert sigma.n_both_correct == int(np.sum(p.argmax(1) == labels))
    assert abs(kl_teacher_student(logits, logits)) < 1e-12
    assert agreement(p, p) == 1.0
    assert conf_mae(p, p) == 0.0
    e_t, e_s, gap = ece_gap(p, p, labels)
    assert e_t == e_s and gap == 0.0
    _, _, gap_all = ece_gap(p, p, labels, mode="all_classes")
    assert gap_all == 0.0
    rho = conf_spearman(p, p)
    assert rho is not None and abs(rho - 1.0) < 1e-12
    assert conf_bias(p, p, labels) == 0.0

    m = confidence_metrics(logits, logits, labels)
    assert m["conf_sigma"] == 0.0 and m["conf_sigma_defined"] is True
    assert m["agreement"] == 1.0 and m["conf_mae"] == 0.0 and m["ece_gap"] == 0.0
    assert m["accuracy"] == m["teacher_accuracy"]


# --------------------------------------------------------------------------- ECE


# Five binary examples, 10 bins; bin i covers (i/10, (i+1)/10].
ECE_PROBS = np.array(
    [
        [0.95, 0.05],  # y=0: top conf .95, correct
        [0.15, 0.85],  # y=0: top conf .85, wrong
        [0.30, 0.70],  # y=0: top conf .70, wrong   (0.70 sits on an edge: bin (.6, .7])
        [0.35, 0.65],  # y=1: top conf .65, correct
        [0.60, 0.40],  # y=0: top conf .60, correct (0.60 sits on an edge: bin (.5, .6])
    ]
)
ECE_LABELS = np.array([0, 0, 0, 1, 0])


def test_ece_top_label_worked_example() -> None:
    # top_label, N = 5:
    #   bin (.9, 1]: {.95 ok}            |1 - .95|  * 1/5 = 0.01
    #   bin (.8, .9]: {.85 wrong}        |0 - .85|  * 1/5 = 0.17
    #   bin (.6, .7]: {.70 wrong, .65 ok} acc .5, conf .675 -> .175 * 2/5 = 0.07
    #   bin (.5, .6]: {.60 ok}           |1 - .60|  * 1/5 = 0.08
    #   ECE = 0.01 + 0.17 + 0.07 + 0.08 = 0.33
    # (Putting 0.70 into (.7, .8] instead would give 0.47.)
    assert ece(ECE_PROBS, ECE_LABELS) == pytest.approx(0.33, abs=1e-12)
    assert ece(ECE_PROBS, ECE_LABELS, mode="top_label") == pytest.approx(0.33, abs=1e-12)


def test_ece_all_classes_worked_example() -> None:
    # all_classes, N = 5 * 2 = 10 (probability, is-true-class) samples:
    #   (.95,1) (.05,0) | (.15,1) (.85,0) | (.30,1) (.70,0) | (.35,0) (.65,1) | (.60,1) (.40,0)
    #   bin (0, .1]:  .05(0)              count*|acc-conf| = .05
    #   bin (.1, .2]: .15(1)                                .85
    #   bin (.2, .3]: .30(1)                                .70
    #   bin (.3, .4]: .35(0) .40(0)  acc 0, conf .375 -> 2*.375 = .75
    #   bin (.5, .6]: .60(1)                                .40
    #   bin (.6, .7]: .70(0) .65(1)  acc .5, conf .675 -> 2*.175 = .35
    #   bin (.8, .9]: .85(0)                                .85
    #   bin (.9, 1]:  .95(1)                                .05
    #   sum = 4.0, ECE = 4.0 / 10 = 0.4
    assert ece(ECE_PROBS, ECE_LABELS, mode="all_classes") == pytest.approx(0.4, abs=1e-12)


def test_reliability_bins_worked_example() -> None:
    b = reliability_bins(ECE_PROBS, ECE_LABELS)
    np.testing.assert_allclose(b.edges, np.linspace(0, 1, 11))
    assert b.counts.tolist() == [0, 0, 0, 0, 0, 1, 2, 0, 1, 1]
    assert b.counts.sum() == 5
    np.testing.assert_allclose(b.confidence[[5, 6, 8, 9]], [0.6, 0.675, 0.85, 0.95])
    np.testing.assert_allclose(b.accuracy[[5, 6, 8, 9]], [1.0, 0.5, 0.0, 1.0])
    empty = b.counts == 0
    assert np.all(np.isnan(b.confidence[empty])) and np.all(np.isnan(b.accuracy[empty]))

    ball = reliability_bins(ECE_PROBS, ECE_LABELS, mode="all_classes")
    assert ball.counts.tolist() == [1, 1, 1, 2, 0, 1, 2, 0, 1, 1]


def test_ece_zero_probability_falls_in_first_bin() -> None:
    # all_classes samples: (1.0, correct) -> last bin, gap 0; (0.0, wrong) -> first bin, gap 0.
    probs = np.array([[1.0, 0.0]])
    b = reliability_bins(probs, np.array([0]), mode="all_classes")
    assert b.counts[0] == 1 and b.counts[-1] == 1
    assert ece(probs, np.array([0]), mode="all_classes") == 0.0
    # Perfectly wrong and certain: ECE 1 in both modes.
    assert ece(probs, np.array([1])) == 1.0
    assert ece(probs, np.array([1]), mode="all_classes") == 1.0


def test_ece_gap_values() -> None:
    teacher = ECE_PROBS
    student = binary([0.75] * 5)  # always predicts class 1 with .75
    # student top-label: all five in bin (.7, .8], acc 1/5 = .2, conf .75 -> ECE .55
    e_t, e_s, gap = ece_gap(teacher, student, ECE_LABELS)
    assert e_t == pytest.approx(0.33)
    assert e_s == pytest.approx(0.55)
    assert gap == pytest.approx(0.22)


# --------------------------------------------------------------------------- sigma and bias


def test_binary_sigma_same_for_both_reference_classes() -> None:
    rng = np.random.default_rng(1)
    teacher = softmax(rng.normal(size=(100, 2)) * 2)
    student = softmax(rng.normal(size=(100, 2)) * 2)
    labels = rng.integers(0, 2, size=100)
    s0 = conf_sigma(teacher, student, labels, reference_class=0)
    s1 = conf_sigma(teacher, student, labels, reference_class=1)
    assert s0.defined and s1.defined and s0.n_both_correct == s1.n_both_correct >= 2
    assert s0.value is not None and s1.value is not None
    assert s0.value == pytest.approx(s1.value, abs=1e-12)
    assert s0.value > 0


def test_three_class_sigma_depends_on_reference_class() -> None:
    teacher = np.array(
        [
            [0.7, 0.2, 0.1],  # y=0, both correct
            [0.1, 0.8, 0.1],  # y=1, both correct
            [0.2, 0.1, 0.7],  # y=2, both correct
            [0.6, 0.3, 0.1],  # y=0, student wrong -> excluded
        ]
    )
    student = np.array(
        [
            [0.5, 0.3, 0.2],
            [0.1, 0.6, 0.3],
            [0.4, 0.1, 0.5],
            [0.2, 0.7, 0.1],
        ]
    )
    labels = np.array([0, 1, 2, 0])
    # r=0: diffs (.2, 0, -.2); mean 0; var = .08/3 = 24/900 -> sigma = sqrt(24)/30 = 0.16330
    # r=1: diffs (-.1, .2, 0); mean 1/30; var = .05/3 - 1/900 = 14/900 -> sqrt(14)/30 = 0.12472
    # r=2: diffs (-.1, -.2, .2); mean -1/30; var = .09/3 - 1/900 = 26/900 -> sqrt(26)/30
    expected = {0: math.sqrt(24) / 30, 1: math.sqrt(14) / 30, 2: math.sqrt(26) / 30}
    for r, want in expected.items():
        res = conf_sigma(teacher, student, labels, reference_class=r)
        assert res == SigmaResult(value=res.value, n_both_correct=3, defined=True)
        assert res.value == pytest.approx(want, abs=1e-12)
    # true-class differences are .2, .2, .2: bias .2
    assert conf_bias(teacher, student, labels) == pytest.approx(0.2, abs=1e-12)
    with pytest.raises(ValueError, match="reference_class"):
        conf_sigma(teacher, student, labels, reference_class=3)
    with pytest.raises(ValueError, match="reference_class"):
        conf_sigma(teacher, student, labels, reference_class=-1)


def test_uniformly_less_sure_student_raises_paper_sigma_not_true_class_std() -> None:
    # Teacher gives the true class 0.9, the student 0.7, on every example; labels mixed.
    labels = np.array([0, 1, 0, 1, 1, 0])
    p_true_t, p_true_s = 0.9, 0.7
    teacher = np.where(labels[:, None] == np.arange(2), p_true_t, 1 - p_true_t)
    student = np.where(labels[:, None] == np.arange(2), p_true_s, 1 - p_true_s)

    # class-0 differences: +.2 where y=0, -.2 where y=1 (3 each): population std = .2
    sigma = conf_sigma(teacher, student, labels)
    assert sigma.defined and sigma.n_both_correct == 6
    assert sigma.value is not None and sigma.value > 0
    assert sigma.value == pytest.approx(0.2, abs=1e-12)

    idx = np.arange(len(labels))
    true_diff = teacher[idx, labels] - student[idx, labels]
    assert np.std(true_diff) == pytest.approx(0.0, abs=1e-12)  # only a mean shift
    bias = conf_bias(teacher, student, labels)
    assert bias == pytest.approx(0.2, abs=1e-12)  # positive: student under-confident
    assert conf_bias(student, teacher, labels) == pytest.approx(-0.2, abs=1e-12)
    assert conf_mae(teacher, student) == pytest.approx(0.2, abs=1e-12)


def test_fewer_than_two_both_correct_is_flagged_not_nan() -> None:
    teacher = binary([0.1, 0.9, 0.8])
    student = binary([0.2, 0.3, 0.4])  # predicts class 0 everywhere
    labels = np.array([0, 1, 1])  # only example 0 is both-correct
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = conf_sigma(teacher, student, labels)
        assert one == SigmaResult(value=None, n_both_correct=1, defined=False)
        none = conf_sigma(teacher, student, np.array([1, 1, 1]))
        assert none == SigmaResult(value=None, n_both_correct=0, defined=False)
        assert conf_bias(teacher, student, np.array([1, 1, 1])) is None
        assert conf_bias(teacher, student, labels) == pytest.approx(0.9 - 0.8)

        m = confidence_metrics(
            np.log(teacher), np.log(student), np.array([1, 1, 1]), ece_mode="all_classes"
        )
        assert m["conf_sigma"] is None and m["conf_sigma_defined"] is False
        assert m["n_both_correct"] == 0 and m["conf_bias"] is None
        assert m["accuracy"] == 0.0
        json.dumps(m, allow_nan=False)


# --------------------------------------------------------------------------- KL, F1, Spearman


def test_kl_hand_computed() -> None:
    teacher_logits = np.array([[0.0, 0.0], [math.log(3.0), 0.0]])  # p = (.5,.5), (.75,.25)
    student_logits = np.array([[0.0, math.log(3.0)], [5.0, 5.0]])  # q = (.25,.75), (.5,.5)
    # KL1 = .5 ln(.5/.25) + .5 ln(.5/.75) = .5 ln(4/3)
    # KL2 = .75 ln(.75/.5) + .25 ln(.25/.5) = .75 ln 1.5 - .25 ln 2
    kl1 = 0.5 * math.log(4 / 3)
    kl2 = 0.75 * math.log(1.5) - 0.25 * math.log(2.0)
    want = (kl1 + kl2) / 2  # = 0.137326...
    assert kl_teacher_student(teacher_logits, student_logits) == pytest.approx(want, abs=1e-12)
    assert want == pytest.approx(0.1373264, abs=1e-6)
    # invariant to per-row logit shifts, stable for huge logits, never negative
    got = kl_teacher_student(teacher_logits + 1000.0, student_logits - 500.0)
    assert got == pytest.approx(want, abs=1e-9)
    assert kl_teacher_student(np.array([[1e4, 0.0]]), np.array([[1e4, 0.0]])) == 0.0
    big = kl_teacher_student(np.array([[0.0, 0.0]]), np.array([[800.0, 0.0]]))
    assert math.isfinite(big) and big == pytest.approx(0.5 * 800.0 - math.log(2.0), rel=1e-9)


def test_f1_macro_hand_computed() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    preds = np.array([0, 1, 1, 1, 0, 2])
    probs = np.eye(3)[preds] * 0.8 + 0.2 / 3
    # class 0: tp 1, fp 1, fn 1 -> P .5, R .5, F1 .5
    # class 1: tp 2, fp 1, fn 0 -> P 2/3, R 1, F1 .8
    # class 2: tp 1, fp 0, fn 1 -> P 1, R .5, F1 2/3
    # macro = (1/2 + 4/5 + 2/3) / 3 = 59/90
    assert f1_macro(labels, probs) == pytest.approx(59 / 90, abs=1e-12)
    assert f1_macro(labels, probs, num_classes=3) == pytest.approx(59 / 90, abs=1e-12)
    assert accuracy(labels, probs) == pytest.approx(4 / 6)

    # a 4th class nobody uses is skipped
    probs4 = np.hstack([probs * 0.9, np.full((6, 1), 0.1)])
    assert f1_macro(labels, probs4, num_classes=4) == pytest.approx(59 / 90, abs=1e-12)

    # a class predicted but never true counts with F1 0: class 0 F1 2/3, class 1 F1 0 -> 1/3
    assert f1_macro(np.array([0, 0]), binary([0.1, 0.9])) == pytest.approx(1 / 3, abs=1e-12)
    with pytest.raises(ValueError, match="num_classes"):
        f1_macro(labels, probs, num_classes=4)


def test_spearman_with_ties_hand_computed() -> None:
    teacher = binary([0.6, 0.7, 0.7, 0.9])  # ranks 1, 2.5, 2.5, 4
    student = binary([0.55, 0.8, 0.65, 0.95])  # ranks 1, 3, 2, 4
    # rank deviations: t (-1.5, 0, 0, 1.5), s (-1.5, .5, -.5, 1.5)
    # cov sum 4.5; t sum sq 4.5; s sum sq 5 -> rho = 4.5 / sqrt(22.5) = sqrt(0.9)
    assert conf_spearman(teacher, student) == pytest.approx(math.sqrt(0.9), abs=1e-12)

    student2 = binary([0.6, 0.6, 0.8, 0.95])  # ranks 1.5, 1.5, 3, 4 -> dev (-1, -1, .5, 1.5)
    # cov sum 1.5 + 2.25 = 3.75; sum sq 4.5 and 4.5 -> rho = 3.75 / 4.5 = 5/6
    assert conf_spearman(teacher, student2) == pytest.approx(5 / 6, abs=1e-12)

    reverse = binary([0.9, 0.8, 0.8, 0.6])
    assert conf_spearman(teacher, reverse) == pytest.approx(-1.0, abs=1e-12)


def test_spearman_undefined_cases() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert conf_spearman(binary([0.7, 0.7, 0.7]), binary([0.6, 0.8, 0.9])) is None
        assert conf_spearman(binary([0.6, 0.8, 0.9]), binary([0.7, 0.7, 0.7])) is None
        assert conf_spearman(binary([0.6]), binary([0.9])) is None


def test_spearman_matches_scipy_when_available() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    t = binary(list(np.round(rng.uniform(0.5, 1.0, size=50), 1)))  # many ties
    s = binary(list(np.round(rng.uniform(0.5, 1.0, size=50), 2)))
    want = stats.spearmanr(t.max(1), s.max(1)).statistic
    assert conf_spearman(t, s) == pytest.approx(want, abs=1e-12)


def test_agreement_accuracy_mae() -> None:
    teacher = binary([0.9, 0.2, 0.6, 0.4])  # preds 1 0 1 0, top conf .9 .8 .6 .6
    student = binary([0.7, 0.7, 0.3, 0.4])  # preds 1 1 0 0, top conf .7 .7 .7 .6
    labels = np.array([1, 0, 0, 0])
    assert agreement(teacher, student) == 0.5
    assert accuracy(labels, teacher) == 0.75
    assert accuracy(labels, student) == 0.75
    # |.9-.7| + |.8-.7| + |.6-.7| + 0 = .4 -> mean .1
    assert conf_mae(teacher, student) == pytest.approx(0.1, abs=1e-12)


# --------------------------------------------------------------------------- all at once


def test_confidence_metrics_keys_and_json() -> None:
    rng = np.random.default_rng(7)
    t_logits = rng.normal(size=(64, 3)) * 2
    s_logits = t_logits + rng.normal(size=(64, 3))
    labels = rng.integers(0, 3, size=64)
    m = confidence_metrics(t_logits, s_logits, labels, reference_class=2, ece_bins=15)
    assert list(m) == EXPECTED_KEYS
    assert list(computed_names()) == EXPECTED_KEYS
    json.dumps(m, allow_nan=False)
    for key, value in m.items():
        assert value is None or type(value) in (float, int, bool), key
    assert type(m["conf_sigma_defined"]) is bool
    assert type(m["n_both_correct"]) is int

    t, s = softmax(t_logits), softmax(s_logits)
    sig = conf_sigma(t, s, labels, reference_class=2)
    assert m["conf_sigma"] == sig.value and m["n_both_correct"] == sig.n_both_correct
    assert m["kl_teacher_student"] == kl_teacher_student(t_logits, s_logits)
    assert m["ece_teacher"] == ece(t, labels, n_bins=15)
    assert m["ece_student"] == ece(s, labels, n_bins=15)
    assert m["ece_gap"] == abs(ece(t, labels, n_bins=15) - ece(s, labels, n_bins=15))
    assert m["conf_spearman"] == conf_spearman(t, s)
    assert m["teacher_accuracy"] == accuracy(labels, t)
    assert m["f1_macro"] == f1_macro(labels, s)
    # labels as a list work too
    assert confidence_metrics(t_logits, s_logits, labels.tolist(), reference_class=2) == (
        confidence_metrics(t_logits, s_logits, labels, reference_class=2)
    )


# --------------------------------------------------------------------------- validation


def test_shape_validation_errors() -> None:
    p3 = np.full((4, 3), 1 / 3)
    p2 = np.full((4, 2), 0.5)
    y = np.array([0, 1, 2, 0])
    with pytest.raises(ValueError, match="4 examples but student_probs has 3"):
        conf_sigma(p3, p3[:3], y)
    with pytest.raises(ValueError, match="3 classes but student_probs has 2"):
        agreement(p3, p2)
    with pytest.raises(ValueError, match="labels has 3 entries"):
        conf_sigma(p3, p3, y[:3])
    with pytest.raises(ValueError, match="empty"):
        accuracy(np.array([], dtype=int), np.zeros((0, 3)))
    with pytest.raises(ValueError, match="2-D"):
        ece(np.array([0.2, 0.8]), np.array([1]))
    with pytest.raises(ValueError, match="labels must lie in"):
        ece(p2, np.array([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="integer"):
        accuracy(np.array([0.5, 1.0, 0.0, 1.0]), p2)
    with pytest.raises(ValueError, match="1-D"):
        accuracy(np.zeros((4, 1), dtype=int), p2)
    with pytest.raises(ValueError, match="at least 2 classes"):
        accuracy(np.zeros(4, dtype=int), np.ones((4, 1)))
    with pytest.raises(ValueError, match="probabilities"):
        conf_mae(p2 * 5, p2)
    with pytest.raises(ValueError, match="NaN"):
        conf_mae(np.array([[np.nan, 1.0]]), np.array([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="n_bins"):
        ece(p2, np.array([0, 1, 1, 0]), n_bins=0)
    with pytest.raises(ValueError, match="mode"):
        ece(p2, np.array([0, 1, 1, 0]), mode="classwise")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="teacher_logits has 2 examples"):
        kl_teacher_student(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="reference_class"):
        confidence_metrics(np.zeros((2, 2)), np.zeros((2, 2)), np.array([0, 1]), reference_class=2)
    # integral float labels are accepted
    assert accuracy(np.array([0.0, 1.0, 1.0, 0.0]), binary([0.1, 0.9, 0.2, 0.3])) == 0.75


def test_module_exports() -> None:
    for name in M.__all__:
        assert hasattr(M, name), name


def test_decision_flip_rate_in_every_run_s_metrics() -> None:
    # class 1's probability against review 0.6 / remove 0.9: bands teacher 2,1,0,1 and
    # student 1,1,1,0 -> 3 of 4 flip; with the one threshold 0.5 only row 2 flips
    t = np.log(binary([0.95, 0.7, 0.2, 0.61]))
    s = np.log(binary([0.85, 0.72, 0.65, 0.59]))
    labels = np.array([1, 1, 0, 1])
    assert confidence_metrics(t, s, labels)["decision_flip_rate"] == 0.75
    assert confidence_metrics(t, s, labels, decision_thresholds=[0.5])["decision_flip_rate"] == 0.25
    # on class 0 (probabilities 1 - p): at 0.6, teacher 0.05/0.3/0.8/0.39, student
    # 0.15/0.28/0.35/0.41 -> only row 2 crosses
    on_0 = confidence_metrics(t, s, labels, decision_class=0, decision_thresholds=[0.6])
    assert on_0["decision_flip_rate"] == 0.25
    with pytest.raises(ValueError, match="metrics.decision_class is 2 but the data has 2 classes"):
        confidence_metrics(t, s, labels, decision_class=2)
