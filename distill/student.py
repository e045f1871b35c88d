"""Build the configured student: the family registry picks the class, the class builds it."""

from __future__ import annotations

from typing import Any

from .config import StudentConfig
from .data import DatasetSplits
from .device import seed_everything
from .families import StudentModel, get_family
from .teacher import Teacher


def build_student(
    cfg: StudentConfig,
    teacher: Teacher,
    splits: DatasetSplits,
    mapping: str | list[int],
    seed: int,
) -> tuple[StudentModel, dict[str, Any]]:
    """Build the student (seeded) and say how: returns (model, description)."""
    seed_everything(seed)
    family = get_family(cfg.family)
    student, info = family.build(cfg, teacher, splits, mapping)
    return student, {**info, **student.describe()}
