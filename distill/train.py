"""The distillation loop, composed of small pieces: stages -> batches -> step -> evaluate.

The loop knows neither a family nor a method: the method plans the stages, says which
outputs it needs and makes the loss; the student is any :class:`StudentModel`. The teacher's
logits come from the context's cache; the teacher itself runs in a step only when the method
asks for its intermediate outputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .batching import Batch, EncodedSplit, steps_per_epoch, train_batches
from .config import RunConfig
from .context import RunContext
from .device import autocast, to_device
from .errors import TrainingError
from .evaluate import exit_metrics, predict_outputs
from .families.base import StudentModel
from .methods import DistillationMethod, Stage, StepInputs, get_method
from .metric_registry import confidence_metrics
from .optim import make_optimizer


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
    total_steps: int = 0  # the run's whole budget in optimiser steps (all stages)

    @property
    def progress(self) -> float:
        """Share of the run's budget done at this evaluation, in (0, 1]."""
        return self.step / self.total_steps if self.total_steps else 0.0


EvalCallback = Callable[[EvalEvent], None]
ProgressFn = Callable[[int, int, str], None]


@dataclass
class TrainResult:
    history: list[EvalEvent] = field(default_factory=list)
    steps: int = 0
    examples_seen: int = 0


def plan_stages(cfg: RunConfig) -> list[Stage]:
    """The stages the configured method runs (no model needed)."""
    method = get_method(cfg.distill.method)
    return method.plan(cfg)


class Distiller:
    """Trains one student against the context's teacher with the configured method."""

    def __init__(
        self,
        ctx: RunContext,
        student: StudentModel,
        cfg: RunConfig,
        mapping: list[int],
        train_split: EncodedSplit | None = None,
        train_logits: torch.Tensor | None = None,
    ) -> None:
        self.ctx, self.student, self.cfg, self.mapping = ctx, student, cfg, mapping
        self.train_split = train_split if train_split is not None else ctx.train
        self.train_logits = (
            train_logits if train_logits is not None else ctx.teacher_outputs.train_logits
        )
        self.method: DistillationMethod = get_method(cfg.distill.method)(
            cfg, student, ctx.teacher, mapping
        )
        # what is trained and saved: a method may add to the student (early exits)
        self.student = self.method.student
        to_device(self.student, ctx.device)
        for module in self.method.extra_modules():
            module.to(ctx.device)

    # ---------------------------------------------------------------- one step
    def loss(self, batch: Batch, stage: Stage) -> torch.Tensor:
        ctx, method = self.ctx, self.method
        with autocast(ctx.device, ctx.bf16):
            s_out = method.forward(stage, self.student, batch, method.student_needs(stage))
            t_out = None
            t_needs = method.teacher_needs(stage)
            if t_needs:
                with torch.no_grad():
                    t_out = ctx.teacher.module(
                        batch.input_ids, batch.attention_mask, t_needs, batch.token_type_ids
                    )
            t_logits = self.train_logits[batch.index].to(ctx.device)
            return method.loss(stage, StepInputs(batch, s_out, t_logits, t_out))

    # ---------------------------------------------------------------- evaluation
    def evaluate(self) -> dict[str, Any]:
        ctx, m = self.ctx, self.cfg.metrics
        logits, layers = predict_outputs(
            self.student, ctx.eval, self.cfg.train.eval_batch_size, ctx.pad_id, ctx.device, ctx.bf16
        )
        if not torch.isfinite(logits).all():
            raise TrainingError("the student produced NaN/inf logits: lower the learning rate")
        self.last_eval_logits = logits
        metrics: dict[str, Any] = confidence_metrics(
            ctx.teacher_outputs.eval_logits.numpy(),
            logits.numpy(),
            ctx.eval.labels.numpy(),
            **m.options(),
        )
        return {**metrics, **exit_metrics(layers)}

    # ---------------------------------------------------------------- the loop
    def fit(
        self, callback: EvalCallback | None = None, progress: ProgressFn | None = None
    ) -> TrainResult:
        t = self.cfg.train
        stages = self.method.stages()
        per_epoch = steps_per_epoch(len(self.train_split), t.batch_size)
        budgets = [max(1, math.ceil(s.epochs * per_epoch)) for s in stages]
        total_steps, result = sum(budgets), TrainResult()
        gen = torch.Generator().manual_seed(t.seed)
        eval_every = t.eval_every_steps or per_epoch
        params: list[nn.Module] = [self.student, *self.method.extra_modules()]
        self.ctx.teacher.module.eval()  # frozen: no dropout in the targets it hands over
        self.student.train()
        for stage, budget in zip(stages, budgets, strict=True):
            self.method.begin_stage(stage)
            optimizer, scheduler = make_optimizer(
                params, stage.lr, t.weight_decay, t.warmup_ratio, budget
            )
            done, running, count = 0, 0.0, 0
            while done < budget:
                batches = train_batches(
                    self.train_split, t.batch_size, self.ctx.pad_id, gen, t.group_by_length
                )
                for batch in batches:
                    loss = self.loss(batch.to(self.ctx.device), stage)
                    if not torch.isfinite(loss):
                        raise TrainingError(
                            f"the loss became {float(loss.detach())} at step {result.steps + 1} "
                            f"(stage {stage.name}): lower train.lr or distill.temperature"
                        )
                    # a step may train nothing (Theseus when no module was replaced): then
                    # there is no gradient, and only the schedule moves on
                    if loss.requires_grad:
                        loss.backward()
                        torch.nn.utils.clip_grad_norm_(
                            [p for m in params for p in m.parameters() if p.requires_grad],
                            t.max_grad_norm,
                        )
                        optimizer.step()
                    loss_value = loss.detach().item()
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
                            total_steps=total_steps,
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
