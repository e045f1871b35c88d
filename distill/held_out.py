"""Scoring a trained student on the held-out test split (the study's end only).

A study picks its winners on validation; their validation scores carry the winner's curse.
The test split (``data.test_fraction``) is never trained on and never seen by a trial, so
the numbers made here are what a user can trust. Besides the metrics, the per-row facts a
bootstrap needs are kept: each row's student prediction and reference-class probability
(multi-label: each row's 0/1 decision and sigmoid probability per label).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .config import RunConfig
from .context import RunContext
from .evaluate import exit_metrics, predict_outputs
from .families import StudentModel
from .metric_registry import confidence_metrics
from .metrics import TEST_PREFIX, softmax
from .multilabel_metrics import sigmoid


@dataclass(frozen=True)
class RowOutcomes:
    """Per test row: the student's predicted class and its probability of class ``r``; for
    multi-label rows, a list per row of each label's decision and probability."""

    pred: list[Any]
    p_ref: list[Any]

    def as_json(self) -> dict[str, Any]:
        return {"pred": self.pred, "p_ref": self.p_ref}


def score_on_test(
    student: StudentModel, ctx: RunContext, cfg: RunConfig
) -> tuple[dict[str, Any], RowOutcomes]:
    """Every data metric of ``student`` on the test rows (plain names) and its row outcomes."""
    split, teacher_logits = ctx.test_rows()
    student.set_attention("sdpa")
    logits, layers = predict_outputs(
        student, split, cfg.train.eval_batch_size, ctx.pad_id, ctx.device, ctx.bf16
    )
    m = cfg.metrics
    metrics: dict[str, Any] = confidence_metrics(
        teacher_logits.numpy(),
        logits.numpy(),
        split.labels.numpy(),
        **m.options(),
    )
    metrics.update(exit_metrics(layers))
    pred, p_ref = _outcomes(logits.numpy(), m.reference_class, ctx.splits.multi_label)
    return metrics, RowOutcomes(pred=pred, p_ref=p_ref)


def _outcomes(
    logits: npt.NDArray[np.floating[Any]], reference_class: int, multi_label: bool
) -> tuple[list[Any], list[Any]]:
    """Per row: (the predicted class, p(reference class)); multi-label: (each label's 0/1
    decision, each label's sigmoid)."""
    if multi_label:
        p = sigmoid(logits)
        return (p >= 0.5).astype(int).tolist(), np.round(p, 7).tolist()
    probs = softmax(logits)
    return (
        [int(x) for x in probs.argmax(axis=1)],
        [round(float(x), 7) for x in probs[:, reference_class]],
    )


def teacher_outcomes(ctx: RunContext, reference_class: int) -> dict[str, list[Any]]:
    """The teacher's row outcomes on the test split, and the labels (a 0/1 list per row for
    multi-label data)."""
    split, teacher_logits = ctx.test_rows()
    pred, p_ref = _outcomes(teacher_logits.numpy(), reference_class, ctx.splits.multi_label)
    return {"labels": split.labels.numpy().astype(int).tolist(), "pred": pred, "p_ref": p_ref}


def prefixed(metrics: dict[str, Any]) -> dict[str, Any]:
    return {f"{TEST_PREFIX}{k}": v for k, v in metrics.items()}


__all__ = ["TEST_PREFIX", "RowOutcomes", "prefixed", "score_on_test", "teacher_outcomes"]
