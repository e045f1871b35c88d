"""Checks that need the prepared data and teacher: run once per study, before any trial.

What a spec cannot know at submission (a teacher folder's depth, the number of labels in a
CSV) is checked here; a failure fails the study with a message naming the field, stored as
the study's error, and no trial runs.
"""

from __future__ import annotations

from kdsearch.distill.context import RunContext
from kdsearch.distill.errors import ConfigError

from .spec import StudySpec, deepest_student


def check_study_against_context(spec: StudySpec, ctx: RunContext) -> None:
    depth = ctx.teacher.num_layers
    deepest = deepest_student(spec)
    if deepest is not None and spec.student.kind == "truncate":
        field, layers = deepest
        if layers > depth:
            raise ConfigError(
                f"{field}: a student of {layers} layers (or teacher layer {layers}) does not "
                f"fit the teacher {spec.teacher.model}, which has {depth} layers: use at most "
                f"{depth}"
            )
    labels = ctx.splits.label_names
    if spec.metrics.reference_class >= len(labels):
        raise ConfigError(
            f"metrics.reference_class: the data has {len(labels)} labels "
            f"({', '.join(labels)}, ids 0..{len(labels) - 1}): use a reference class below "
            f"{len(labels)}"
        )
    decision = spec.metrics.decision_class
    if decision is not None and decision >= len(labels):
        raise ConfigError(
            f"metrics.decision_class: the data has {len(labels)} labels "
            f"({', '.join(labels)}, ids 0..{len(labels) - 1}): pick the id of the label or "
            "class the operating thresholds apply to"
        )
