"""The distillation-method interface: which outputs a method needs, and the loss it makes.

A method is built once per run for (config, student, teacher, layer mapping). It plans the
training stages, says per stage which intermediate outputs it needs from the student and
the teacher (an empty set means the cached teacher logits suffice and the teacher does not
run), may own extra trainable modules (a projection) and turns outputs into a loss.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from pydantic import BaseModel
from torch import nn

from ..families.base import ModelOutputs, StudentModel
from ..losses import prediction_loss

if TYPE_CHECKING:
    from ..batching import Batch
    from ..config import RunConfig
    from ..teacher import Teacher


@dataclass(frozen=True)
class Stage:
    index: int
    name: str
    epochs: float
    lr: float


@dataclass
class StepInputs:
    """What a loss sees for one batch."""

    batch: Batch
    student: ModelOutputs
    teacher_logits: torch.Tensor  # cached, for every row of the batch
    teacher: ModelOutputs | None  # a live teacher pass, only when the stage asked for one


class DistillationMethod(ABC):
    name: ClassVar[str]
    # the method's own settings, under ``distill.options.<name>`` (searchable as
    # ``<name>_<field>``); None: it has none
    options_model: ClassVar[type[BaseModel] | None] = None
    # whether the kd method's loss settings (intermediate weights, mode) apply to it
    uses_kd_losses: ClassVar[bool] = False

    def __init__(
        self, cfg: RunConfig, student: StudentModel, teacher: Teacher, mapping: list[int]
    ) -> None:
        self.cfg, self.student, self.teacher, self.mapping = cfg, student, teacher, mapping

    @classmethod  # noqa: B027 - optional hook: most methods run on any student
    def check_config(cls, cfg: RunConfig, student_provides: frozenset[str]) -> None:
        """Raise ConfigError when this method cannot run ``cfg`` with such a student."""

    @classmethod
    @abstractmethod
    def plan(cls, cfg: RunConfig) -> list[Stage]:
        """The training stages, in order (known from the config alone)."""

    def stages(self) -> list[Stage]:
        return self.plan(self.cfg)

    def student_needs(self, stage: Stage) -> frozenset[str]:
        return frozenset()

    def teacher_needs(self, stage: Stage) -> frozenset[str]:
        return frozenset()

    def extra_modules(self) -> list[nn.Module]:
        """Modules trained beside the student (not saved with it)."""
        return []

    def begin_stage(self, stage: Stage) -> None:  # noqa: B027 - optional hook
        """Called before a stage's optimizer is made (e.g. to freeze parameters)."""

    def forward(
        self, stage: Stage, student: StudentModel, batch: Batch, needs: frozenset[str]
    ) -> ModelOutputs:
        """The student's training-time forward pass (a method may run a different model,
        e.g. BERT-of-Theseus's mix of successor and predecessor modules)."""
        return student(batch.input_ids, batch.attention_mask, needs, batch.token_type_ids)

    @abstractmethod
    def loss(self, stage: Stage, step: StepInputs) -> torch.Tensor: ...

    def prediction_loss(self, step: StepInputs) -> torch.Tensor:
        """The configured prediction-layer loss: ``(1 - alpha) * soft(T) + alpha * hard CE``."""
        d = self.cfg.distill
        return prediction_loss(
            step.student.logits,
            step.teacher_logits,
            step.batch.labels,
            soft_loss=d.soft_loss,
            temperature=d.temperature,
            alpha=d.alpha,
            t2_scaling=d.t2_scaling,
        )
