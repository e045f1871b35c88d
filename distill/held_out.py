"""Scoring a trained student on the held-out test split (the study's end only).

A study picks its winners on validation; their validation scores carry the winner's curse.
The test split (``data.test_fraction``) is never trained on and never seen by a trial, so
the numbers made here are what a user can trust. Besides the metrics, the per-row facts a
bootstrap needs are kept: each row's student prediction and reference-class probability.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import RunConfig
from .context import RunContext
from .evaluate import exit_metrics, predict_outputs
from .families import StudentModel
from .metric_registry import confidence_metrics
from .metrics import TEST_PREFIX, softmax


@dataclass(frozen=True)
class RowOutcomes:
    """Per test row: the student's predicted class and its probability of class ``r``."""

    pred: list[int]
    p_ref: list[float]

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
    if ctx.splits.multi_label:  # no per-row bootstrap for multi-label yet
        return metrics, RowOutcomes(pred=[], p_ref=[])
    probs = softmax(logits.numpy())
    r = m.reference_class
    rows = RowOutcomes(
        pred=[int(x) for x in probs.argmax(axis=1)],
        p_ref=[round(float(x), 7) for x in probs[:, r]],
    )
    return metrics, rows


def teacher_outcomes(ctx: RunContext, reference_class: int) -> dict[str, list[Any]]:
    """The teacher's row outcomes on the test split, and the labels."""
    split, teacher_logits = ctx.test_rows()
    probs = softmax(teacher_logits.numpy())
    return {
        "labels": [int(x) for x in split.labels.numpy()],
        "pred": [int(x) for x in probs.argmax(axis=1)],
        "p_ref": [round(float(x), 7) for x in probs[:, reference_class]],
    }


def prefixed(metrics: dict[str, Any]) -> dict[str, Any]:
    return {f"{TEST_PREFIX}{k}": v for k, v in metrics.items()}


__all__ = ["TEST_PREFIX", "RowOutcomes", "prefixed", "score_on_test", "teacher_outcomes"]
