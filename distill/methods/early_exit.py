"""The ``early_exit`` method: FastBERT (Liu et al. 2020), an exit after every student layer.

Training has two parts:

1. **backbone**: the student is distilled exactly as the ``kd`` method does it (its
   prediction loss and, when configured, its intermediate losses and two-stage schedule);
   the exits are frozen;
2. **exits** (self-distillation): the backbone and its final classifier are frozen (no
   gradient, no dropout) and each exit learns to match soft targets: the final layer's
   probabilities (``targets: final``, FastBERT) or the teacher's (``targets: teacher``),
   with ``distill.soft_loss`` at ``distill.temperature``; the loss sums over the exits.

At inference a row leaves at the first exit whose normalised entropy is at most ``speed``
(see :mod:`distill.early_exit`). Evaluations during the backbone part use the final layer
alone; from the exits part on they use ``speed``, so every metric, conf_sigma included, is
judged at the exit each row took.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ..early_exit import EarlyExitModel
from ..errors import ConfigError
from ..families.base import EXITS
from ..losses import get_soft_loss
from .base import DistillationMethod, Stage, StepInputs
from .kd import KnowledgeDistillation
from .registry import method_options, register_method

if TYPE_CHECKING:
    from ..config import RunConfig
    from ..families.base import StudentModel
    from ..teacher import Teacher

EXIT_STAGE = "exits"


class EarlyExitOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    speed: float = Field(
        default=0.3,
        ge=0.0,
        le=1.0,
        description="leave at the first exit whose normalised entropy is at most this",
    )
    targets: Literal["final", "teacher"] = Field(
        default="final", description="exits learn the final layer's (or the teacher's) outputs"
    )
    epochs: float = Field(default=1.0, gt=0.0, le=100.0, description="epochs training the exits")
    lr: float = Field(default=2e-3, gt=0.0, le=1.0, description="learning rate of the exits")
    width: int = Field(default=128, ge=8, le=4096, description="width of each exit's hidden layer")


@register_method
class EarlyExit(DistillationMethod):
    name = "early_exit"
    options_model = EarlyExitOptions
    uses_kd_losses = True

    def __init__(
        self, cfg: RunConfig, student: StudentModel, teacher: Teacher, mapping: list[int]
    ) -> None:
        from ..families.transformer import HFClassifier

        assert isinstance(student, HFClassifier), "check_config admits transformers only"
        self.options: EarlyExitOptions = self.read_options(cfg)
        model = EarlyExitModel(student, self.options.width, speed=0.0)
        super().__init__(cfg, model, teacher, mapping)
        self.model = model
        self.backbone_method = KnowledgeDistillation(cfg, model, teacher, mapping)

    @classmethod
    def read_options(cls, cfg: RunConfig) -> EarlyExitOptions:
        opts: EarlyExitOptions = method_options(cls.name, cfg.distill.options.get(cls.name))
        return opts

    @classmethod
    def check_config(cls, cfg: RunConfig, student_provides: frozenset[str]) -> None:
        if cfg.student.family != "transformer":
            raise ConfigError(
                "distill.method 'early_exit' adds an exit after every transformer layer: it "
                f"needs student.family transformer (got {cfg.student.family})"
            )
        if cfg.data.multi_label:
            raise ConfigError(
                "distill.method 'early_exit' exits on the entropy of a softmax over classes; "
                "multi-label data (a sigmoid per label) has no such uncertainty: use "
                "distill.method kd or theseus"
            )
        if cfg.student.kind != "pretrained" and cfg.student.num_layers < 2:
            raise ConfigError(
                "distill.method 'early_exit' needs a student with at least 2 layers "
                "(student.num_layers): with one layer there is nothing to exit early from"
            )
        KnowledgeDistillation.check_config(cfg, student_provides)

    @classmethod
    def plan(cls, cfg: RunConfig) -> list[Stage]:
        stages = KnowledgeDistillation.plan(cfg)
        o = cls.read_options(cfg)
        return [*stages, Stage(len(stages) + 1, EXIT_STAGE, o.epochs, o.lr)]

    def student_needs(self, stage: Stage) -> frozenset[str]:
        if stage.name == EXIT_STAGE:
            return frozenset({EXITS})
        return self.backbone_method.student_needs(stage)

    def teacher_needs(self, stage: Stage) -> frozenset[str]:
        if stage.name == EXIT_STAGE:
            return frozenset()
        return self.backbone_method.teacher_needs(stage)

    def extra_modules(self) -> list[nn.Module]:
        return self.backbone_method.extra_modules()

    def begin_stage(self, stage: Stage) -> None:
        """Backbone stages: the exits are frozen, the final layer answers. Exit stage: only
        the exits learn, and evaluations exit early at ``speed``."""
        exits = stage.name == EXIT_STAGE
        heads = {id(p) for p in self.model.exits.parameters()}
        for p in self.model.parameters():
            p.requires_grad_((id(p) in heads) == exits)
        for module in self.extra_modules():
            for p in module.parameters():
                p.requires_grad_(not exits)
        self.model.speed = self.options.speed if exits else 0.0

    def loss(self, stage: Stage, step: StepInputs) -> torch.Tensor:
        if stage.name != EXIT_STAGE:
            return self.backbone_method.loss(stage, step)
        d = self.cfg.distill
        exits = step.student.exits
        assert exits is not None, "the exit stage asks for every exit's logits"
        targets = (
            step.student.logits.detach() if self.options.targets == "final" else step.teacher_logits
        )
        soft = get_soft_loss(d.soft_loss)
        total = torch.zeros((), device=targets.device)
        for logits in exits[:-1]:
            total = total + soft(logits, targets, d.temperature, d.t2_scaling)
        return total
