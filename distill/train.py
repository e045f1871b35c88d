"""The distillation loop, composed of small pieces: stages -> batches -> step -> evaluate.

The teacher's logits come from the context's cache; the teacher itself runs in a step only
when an intermediate loss needs its hidden states or attention scores.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from .attention import SCORES_IMPL, use_attention
from .batching import Batch, steps_per_epoch, train_batches
from .config import RunConfig
from .context import RunContext
from .device import autocast, to_device
from .errors import TrainingError
from .evaluate import predict_logits
from .losses import attention_mse, embedding_mse, hidden_mse, prediction_loss
from .metrics import confidence_metrics
from .optim import make_optimizer
from .student import HiddenProjection


@dataclass(frozen=True)
class Stage:
    index: int
    name: str
    epochs: float
    lr: float
    prediction: bool
    intermediate: bool


@dataclass
class EvalEvent:
    """Handed to the caller after each evaluation. ``step`` counts across stages."""

    stage: int
    stage_name: str
    step: int
    epoch: float
    train_loss: float
    metrics: dict[str, Any]
    final: bool = False  # the run's last evaluation: pruning now would save nothing


EvalCallback = Callable[[EvalEvent], None]
ProgressFn = Callable[[int, int, str], None]


@dataclass
class TrainResult:
    history: list[EvalEvent] = field(default_factory=list)
    steps: int = 0
    examples_seen: int = 0


def plan_stages(cfg: RunConfig) -> list[Stage]:
    t, d = cfg.train, cfg.distill
    if d.mode == "two_stage":
        return [
            Stage(1, "intermediate", t.stage1.epochs, t.stage1.lr, False, True),
            Stage(2, "prediction", t.stage2.epochs, t.stage2.lr, True, False),
        ]
    return [Stage(1, "one_stage", t.epochs, t.lr, True, d.uses_intermediate)]


class Distiller:
    """Trains one student against the context's teacher."""

    def __init__(
        self, ctx: RunContext, student: PreTrainedModel, cfg: RunConfig, mapping: list[int]
    ) -> None:
        self.ctx, self.student, self.cfg, self.mapping = ctx, student, cfg, mapping
        d = cfg.distill
        self.need_attention = bool(d.attention_weight)
        self.need_hidden = bool(d.hidden_weight or d.embedding_weight)
        s_width, t_width = int(student.config.hidden_size), ctx.teacher.hidden_size
        self.projection: nn.Module | None = None
        if self.need_hidden and s_width != t_width:
            self.projection = HiddenProjection(s_width, t_width)
        impl = SCORES_IMPL if self.need_attention else "sdpa"
        use_attention(student, impl)
        use_attention(ctx.teacher.model, impl)
        to_device(self.student, ctx.device)
        if self.projection is not None:
            self.projection.to(ctx.device)

    # ---------------------------------------------------------------- one step
    def _intermediate_loss(self, batch: Batch, s_out: Any) -> torch.Tensor:
        d = self.cfg.distill
        with torch.no_grad(), autocast(self.ctx.device, self.ctx.bf16):
            t_out = self.ctx.teacher.model(
                **batch.model_inputs(),
                output_hidden_states=self.need_hidden,
                output_attentions=self.need_attention,
            )
        mask = batch.attention_mask
        total = torch.zeros((), device=self.ctx.device)
        n = len(self.mapping)
        for m, g in enumerate(self.mapping, start=1):
            if d.hidden_weight:
                h = hidden_mse(
                    s_out.hidden_states[m], t_out.hidden_states[g], mask, self.projection
                )
                total = total + d.hidden_weight * h / n
            if d.attention_weight:
                a = attention_mse(s_out.attentions[m - 1], t_out.attentions[g - 1], mask)
                total = total + d.attention_weight * a / n
        if d.embedding_weight:
            e = embedding_mse(s_out.hidden_states[0], t_out.hidden_states[0], mask, self.projection)
            total = total + d.embedding_weight * e
        return total

    def loss(self, batch: Batch, stage: Stage) -> torch.Tensor:
        d = self.cfg.distill
        use_inter = stage.intermediate and d.uses_intermediate
        with autocast(self.ctx.device, self.ctx.bf16):
            s_out = self.student(
                **batch.model_inputs(),
                output_hidden_states=use_inter and self.need_hidden,
                output_attentions=use_inter and self.need_attention,
            )
            total = torch.zeros((), device=self.ctx.device)
            if stage.prediction:
                t_logits = self.ctx.teacher_outputs.train_logits[batch.index].to(self.ctx.device)
                total = total + prediction_loss(
                    s_out.logits,
                    t_logits,
                    batch.labels,
                    soft_loss=d.soft_loss,
                    temperature=d.temperature,
                    alpha=d.alpha,
                    t2_scaling=d.t2_scaling,
                )
            if use_inter:
                total = total + self._intermediate_loss(batch, s_out)
        return total

    # ---------------------------------------------------------------- evaluation
    def evaluate(self) -> dict[str, Any]:
        ctx, m = self.ctx, self.cfg.metrics
        logits = predict_logits(
            self.student, ctx.eval, self.cfg.train.eval_batch_size, ctx.pad_id, ctx.device, ctx.bf16
        )
        if not torch.isfinite(logits).all():
            raise TrainingError("the student produced NaN/inf logits: lower the learning rate")
        self.last_eval_logits = logits
        return confidence_metrics(
            ctx.teacher_outputs.eval_logits.numpy(),
            logits.numpy(),
            ctx.eval.labels.numpy(),
            reference_class=m.reference_class,
            ece_bins=m.ece_bins,
            ece_mode=m.ece_mode,
        )

    # ---------------------------------------------------------------- the loop
    def fit(
        self, callback: EvalCallback | None = None, progress: ProgressFn | None = None
    ) -> TrainResult:
        t = self.cfg.train
        stages = plan_stages(self.cfg)
        per_epoch = steps_per_epoch(len(self.ctx.train), t.batch_size)
        budgets = [max(1, math.ceil(s.epochs * per_epoch)) for s in stages]
        total_steps, result = sum(budgets), TrainResult()
        gen = torch.Generator().manual_seed(t.seed)
        eval_every = t.eval_every_steps or per_epoch
        params: list[nn.Module] = [self.student]
        if self.projection is not None:
            params.append(self.projection)
        self.student.train()
        for stage, budget in zip(stages, budgets, strict=True):
            optimizer, scheduler = make_optimizer(
                params, stage.lr, t.weight_decay, t.warmup_ratio, budget
            )
            done, running, count = 0, 0.0, 0
            while done < budget:
                batches = train_batches(
                    self.ctx.train, t.batch_size, self.ctx.pad_id, gen, t.group_by_length
                )
                for batch in batches:
                    loss = self.loss(batch.to(self.ctx.device), stage)
                    if not torch.isfinite(loss):
                        raise TrainingError(
                            f"the loss became {float(loss)} at step {result.steps + 1} "
                            f"(stage {stage.name}): lower train.lr or distill.temperature"
                        )
                    loss.backward()
                    loss_value = loss.detach().item()
                    torch.nn.utils.clip_grad_norm_(
                        [p for m in params for p in m.parameters()], t.max_grad_norm
                    )
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    done += 1
                    result.steps += 1
                    result.examples_seen += len(batch.index)
                    running, count = running + loss_value, count + 1
                    if progress is not None:
                        progress(result.steps, total_steps, f"{stage.name} loss {loss_value:.4f}")
                    if done % eval_every == 0 or done == budget:
                        event = EvalEvent(
                            stage.index,
                            stage.name,
                            result.steps,
                            round(done / per_epoch, 4),
                            running / max(1, count),
                            self.evaluate(),
                            final=stage is stages[-1] and done == budget,
                        )
                        running, count = 0.0, 0
                        result.history.append(event)
                        if callback is not None:
                            callback(event)
                        self.student.train()
                    if done >= budget:
                        break
        self.student.eval()
        return result
