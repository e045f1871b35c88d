"""Multi-label metrics and decision flips on hand-computed cases (no models)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kdsearch.distill.decision_flips import check_thresholds, decision_flips
from kdsearch.distill.multilabel_metrics import multilabel_metrics, sigmoid


def logit(p: list[list[float]]) -> np.ndarray:
    a = np.asarray(p, dtype=np.float64)
    return np.log(a / (1 - a))


Y = [[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 1, 1]]
# the teacher decides every label right; the student misses one label in rows 1, 2 and 3
T = [[0.9, 0.2, 0.8], [0.3, 0.1, 0.7], [0.8, 0.6, 0.4], [0.2, 0.9, 0.6]]
S = [[0.7, 0.4, 0.9], [0.6, 0.2, 0.55], [0.85, 0.3, 0.3], [0.1, 0.8, 0.45]]


def test_multilabel_metrics_by_hand() -> None:
    m = multilabel_metrics(logit(T), logit(S), Y)
    assert m["teacher_exact_match"] == 1.0
    assert m["exact_match"] == 0.25  # only row 0 has every label right
    f1 = m["f1_macro"]
    # label 0: tp 2, fp 1 -> 4/5; label 1: tp 1, fn 1 -> 2/3; label 2: tp 2, fn 1 -> 4/5
    assert f1.per_label == pytest.approx([0.8, 2 / 3, 0.8])
    assert f1.macro == pytest.approx((0.8 + 2 / 3 + 0.8) / 3)
    assert m["agreement"].per_label == [0.75, 0.75, 0.75]
    # conf_sigma per label, over the rows both models get right for that label
    sigma = m["conf_sigma"]
    by_hand = [
        float(np.std([0.9 - 0.7, 0.8 - 0.85, 0.2 - 0.1])),  # label 0: rows 0, 2, 3
        float(np.std([0.2 - 0.4, 0.1 - 0.2, 0.9 - 0.8])),  # label 1: rows 0, 1, 3
        float(np.std([0.8 - 0.9, 0.7 - 0.55, 0.4 - 0.3])),  # label 2: rows 0, 1, 2
    ]
    assert by_hand == pytest.approx([0.10274, 0.12472, 0.10801], abs=1e-5)
    assert sigma.per_label == pytest.approx(by_hand)
    assert sigma.macro == pytest.approx(sum(by_hand) / 3)


def test_undefined_label_sigma_is_kept_apart() -> None:
    # label 1: the student is right on no row -> no sigma for it; the macro skips it
    y = [[1, 1], [0, 0], [1, 0]]
    t = [[0.9, 0.8], [0.2, 0.3], [0.7, 0.4]]
    s = [[0.6, 0.3], [0.4, 0.6], [0.8, 0.7]]
    sigma = multilabel_metrics(logit(t), logit(s), y)["conf_sigma"]
    assert sigma.per_label[1] is None
    assert sigma.per_label[0] == pytest.approx(float(np.std([0.3, -0.2, -0.1])))
    assert sigma.macro == sigma.per_label[0]


def test_binary_kl_and_ece_by_hand() -> None:
    # one label: KL(Bern(0.9) || Bern(0.6)) = 0.9 ln(0.9/0.6) + 0.1 ln(0.1/0.4)
    m = multilabel_metrics(logit([[0.9]]), logit([[0.6]]), [[1]])
    expected = 0.9 * math.log(0.9 / 0.6) + 0.1 * math.log(0.1 / 0.4)
    assert m["kl_teacher_student"].macro == pytest.approx(expected)
    assert expected == pytest.approx(0.226289, abs=1e-6)
    # ECE: confidences 0.95, 0.95 (one right) and 0.7, 0.7 (both right):
    # (2 * |0.95 - 0.5| + 2 * |0.7 - 1.0|) / 4 = 0.375
    p = [[0.95], [0.95], [0.3], [0.3]]
    y = [[1], [0], [0], [0]]
    m = multilabel_metrics(logit(p), logit(p), y)
    assert m["ece_student"].macro == pytest.approx(0.375)
    assert m["ece_gap"].macro == pytest.approx(0.0)
    assert m["kl_teacher_student"].macro == pytest.approx(0.0, abs=1e-12)


def test_multilabel_input_errors() -> None:
    with pytest.raises(ValueError, match="labels must be 0/1"):
        multilabel_metrics(logit(T), logit(S), [[2, 0, 1]] * 4)
    with pytest.raises(ValueError, match=r"labels must have shape \(4, 3\)"):
        multilabel_metrics(logit(T), logit(S), [[1, 0]] * 4)
    with pytest.raises(ValueError, match="examples x labels"):
        multilabel_metrics(logit(T), logit(S)[:, :2], Y)
    assert sigmoid([0.0, 1000.0, -1000.0]).tolist() == [0.5, 1.0, 0.0]


def test_decision_flips_by_hand() -> None:
    # bands at thresholds 0.6 (review) and 0.9 (remove): teacher 2,1,0,1; student 1,1,1,0
    flips = decision_flips([0.95, 0.7, 0.2, 0.61], [0.85, 0.72, 0.65, 0.59], [0.9, 0.6])
    assert flips.rate == 0.75 and flips.n == 4
    assert flips.per_threshold == {0.6: 0.5, 0.9: 0.25}
    # a score exactly at a threshold is on the acting side
    assert decision_flips([0.6], [0.6], [0.6]).rate == 0.0
    assert decision_flips([0.6], [0.5999], [0.6]).rate == 1.0
    same = decision_flips([0.1, 0.5, 0.99], [0.2, 0.55, 0.91], [0.6, 0.9])
    assert same.rate == 0.0 and same.per_threshold == {0.6: 0.0, 0.9: 0.0}


def test_decision_flip_input_errors() -> None:
    with pytest.raises(ValueError, match="at least one threshold"):
        check_thresholds([])
    with pytest.raises(ValueError, match=r"strictly between 0 and 1, got \[1.0\]"):
        check_thresholds([0.6, 1.0])
    with pytest.raises(ValueError, match="repeated"):
        check_thresholds([0.6, 0.6])
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        decision_flips([1.2], [0.5], [0.6])
    with pytest.raises(ValueError, match="teacher_scores has 2 examples, student_scores 1"):
        decision_flips([0.2, 0.3], [0.5], [0.6])
    with pytest.raises(ValueError, match="1-D"):
        decision_flips([[0.2]], [[0.5]], [0.6])
