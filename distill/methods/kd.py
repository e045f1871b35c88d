"""The ``kd`` method: prediction-layer KD plus TinyBERT's and PKD's intermediate losses.

Prediction loss: ``(1 - alpha) * soft_loss(T) + alpha * hard_ce`` (the hard term only over
rows that have a label). Intermediate loss: ``hidden_weight * hidden_mse + attention_weight *
attention_mse + embedding_weight * embedding_mse`` over the mapped layers, through a learned
projection when the widths differ. ``one_stage`` trains both together; ``two_stage`` trains
the intermediate loss first and the prediction loss second (TinyBERT). The teacher runs in a
step only when an intermediate loss needs its hidden states or attention scores; otherwise
its cached logits are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..attention import SCORES_IMPL
from ..errors import ConfigError
from ..families.base import ATTENTIONS, HIDDEN_STATES
from ..losses import attention_mse, embedding_mse, hidden_mse, pkd_loss
from .base import DistillationMethod, Stage, StepInputs
from .registry import register_method

if TYPE_CHECKING:
    from ..config import RunConfig
    from ..families.base import StudentModel
    from ..teacher import Teacher


class HiddenProjection(nn.Module):
    """TinyBERT's learned W_h: student width -> teacher width, shared by all layers."""

    def __init__(self, student_width: int, teacher_width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(student_width, teacher_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


@register_method
class KnowledgeDistillation(DistillationMethod):
    name = "kd"
    uses_kd_losses = True

    def __init__(
        self, cfg: RunConfig, student: StudentModel, teacher: Teacher, mapping: list[int]
    ) -> None:
        super().__init__(cfg, student, teacher, mapping)
        d = cfg.distill
        needs: set[str] = set()
        if d.attention_weight:
            needs.add(ATTENTIONS)
        if d.hidden_weight or d.embedding_weight or d.pkd_weight:
            needs.add(HIDDEN_STATES)
        self.intermediate_needs = frozenset(needs)
        self.projection: HiddenProjection | None = None
        s_width, t_width = student.hidden_size, teacher.hidden_size
        if HIDDEN_STATES in needs and s_width != t_width:
            self.projection = HiddenProjection(s_width, t_width)
        impl = SCORES_IMPL if ATTENTIONS in needs else "sdpa"
        student.set_attention(impl)
        teacher.module.set_attention(impl)
        two = d.mode == "two_stage"
        # stage name -> (prediction loss on, intermediate loss on)
        self._losses = (
            {"intermediate": (False, True), "prediction": (True, False)}
            if two
            else {"one_stage": (True, d.uses_intermediate)}
        )

    @classmethod
    def check_config(cls, cfg: RunConfig, student_provides: frozenset[str]) -> None:
        d = cfg.distill
        wanted = {
            HIDDEN_STATES: ("hidden_weight", "embedding_weight", "pkd_weight"),
            ATTENTIONS: ("attention_weight",),
        }
        for output, fields in wanted.items():
            used = [f for f in fields if getattr(d, f)]
            if used and output not in student_provides:
                raise ConfigError(
                    f"distill.{used[0]} needs the student's {output}, which the "
                    f"{cfg.student.family} family does not produce: set "
                    f"{' and '.join('distill.' + f for f in used)} to 0 (and distill.mode to "
                    "one_stage), or use student.family transformer"
                )

    @classmethod
    def plan(cls, cfg: RunConfig) -> list[Stage]:
        t = cfg.train
        if cfg.distill.mode == "two_stage":
            return [
                Stage(1, "intermediate", t.stage1.epochs, t.stage1.lr),
                Stage(2, "prediction", t.stage2.epochs, t.stage2.lr),
            ]
        return [Stage(1, "one_stage", t.epochs, t.lr)]

    def student_needs(self, stage: Stage) -> frozenset[str]:
        return self.intermediate_needs if self._losses[stage.name][1] else frozenset()

    def teacher_needs(self, stage: Stage) -> frozenset[str]:
        return self.student_needs(stage)

    def extra_modules(self) -> list[nn.Module]:
        return [self.projection] if self.projection is not None else []

    def loss(self, stage: Stage, step: StepInputs) -> torch.Tensor:
        prediction, intermediate = self._losses[stage.name]
        total = torch.zeros((), device=step.student.logits.device)
        if prediction:
            total = total + self.prediction_loss(step)
        if intermediate:
            total = total + self._intermediate_loss(step)
        return total

    def _intermediate_loss(self, step: StepInputs) -> torch.Tensor:
        d = self.cfg.distill
        s_out, t_out = step.student, step.teacher
        assert t_out is not None, "the intermediate loss needs a live teacher pass"
        mask = step.batch.attention_mask
        total = torch.zeros((), device=s_out.logits.device)
        n = len(self.mapping)
        for m, g in enumerate(self.mapping, start=1):
            if d.hidden_weight:
                assert s_out.hidden_states is not None and t_out.hidden_states is not None
                h = hidden_mse(
                    s_out.hidden_states[m], t_out.hidden_states[g], mask, self.projection
                )
                total = total + d.hidden_weight * h / n
            if d.attention_weight:
                assert s_out.attentions is not None and t_out.attentions is not None
                a = attention_mse(s_out.attentions[m - 1], t_out.attentions[g - 1], mask)
                total = total + d.attention_weight * a / n
        if d.embedding_weight:
            assert s_out.hidden_states is not None and t_out.hidden_states is not None
            e = embedding_mse(s_out.hidden_states[0], t_out.hidden_states[0], mask, self.projection)
            total = total + d.embedding_weight * e
        if d.pkd_weight:
            # PKD: the intermediate layers only (the last one is the prediction loss's)
            assert s_out.hidden_states is not None and t_out.hidden_states is not None
            pairs = list(enumerate(self.mapping, start=1))[:-1]
            p = pkd_loss(
                [s_out.hidden_states[m][:, 0] for m, _ in pairs],
                [t_out.hidden_states[g][:, 0] for _, g in pairs],
                self.projection,
            )
            total = total + d.pkd_weight * p
        return total
