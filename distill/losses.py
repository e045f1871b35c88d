"""Distillation losses, each registered by name (a config string picks them).

Prediction-layer losses take ``(student_logits, teacher_logits, temperature, t2_scaling)``.
Intermediate losses take student/teacher tensors and a token mask; padded positions never
contribute. Adding a loss means writing one function and decorating it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .errors import ConfigError

SoftLoss = Callable[[torch.Tensor, torch.Tensor, float, bool], torch.Tensor]
_SOFT: dict[str, SoftLoss] = {}
_SOFT_MULTI: dict[str, SoftLoss] = {}  # the same losses for multi-label (a sigmoid per label)


def register_soft_loss(name: str, *, multi_label: bool = False) -> Callable[[SoftLoss], SoftLoss]:
    """Register a soft loss under ``name``; ``multi_label=True`` registers its version for
    multi-label tasks (per-label binary distributions)."""

    def deco(fn: SoftLoss) -> SoftLoss:
        (_SOFT_MULTI if multi_label else _SOFT)[name] = fn
        return fn

    return deco


def available_soft_losses() -> list[str]:
    return sorted(_SOFT)


def get_soft_loss(name: str, multi_label: bool = False) -> SoftLoss:
    if name not in _SOFT:
        raise ConfigError(
            f"unknown distill.soft_loss {name!r}: use one of {', '.join(available_soft_losses())}"
        )
    if not multi_label:
        return _SOFT[name]
    if name not in _SOFT_MULTI:
        raise ConfigError(
            f"distill.soft_loss {name!r} has no multi-label version: use one of "
            f"{', '.join(sorted(_SOFT_MULTI))}"
        )
    return _SOFT_MULTI[name]


@register_soft_loss("soft_ce")
def soft_cross_entropy(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    t2_scaling: bool = True,
) -> torch.Tensor:
    """Cross-entropy of the student against the teacher's softened distribution (TinyBERT)."""
    t = temperature
    target = F.softmax(teacher_logits.float() / t, dim=-1)
    loss = -(target * F.log_softmax(student_logits.float() / t, dim=-1)).sum(-1).mean()
    return loss * (t * t) if t2_scaling else loss


@register_soft_loss("kl")
def kl_divergence(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    t2_scaling: bool = True,
) -> torch.Tensor:
    """KL(teacher_T || student_T), batch mean (Hinton et al.); equals soft_ce minus H(teacher)."""
    t = temperature
    log_p_s = F.log_softmax(student_logits.float() / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.float() / t, dim=-1)
    loss = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    return loss * (t * t) if t2_scaling else loss


@register_soft_loss("logit_mse")
def logit_mse(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    t2_scaling: bool = True,
) -> torch.Tensor:
    """Tang et al. (2019): squared distance of the raw logits, summed over classes, batch mean.

    It matches logits, not probabilities, so the temperature (and T^2 scaling) do not apply.
    """
    diff = student_logits.float() - teacher_logits.float()
    return (diff * diff).sum(-1).mean()


# ---------------------------------------------------------------- multi-label
# Each label is its own binary distribution (sigmoid(z / T), 1 - sigmoid(z / T)); the loss is
# the binary version of the single-label one, summed over labels, averaged over rows.


def _binary_targets(teacher_logits: torch.Tensor, t: float) -> torch.Tensor:
    return torch.sigmoid(teacher_logits.float() / t)


@register_soft_loss("soft_ce", multi_label=True)
def binary_soft_cross_entropy(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    t2_scaling: bool = True,
) -> torch.Tensor:
    """Per label, the binary cross-entropy of the student's sigmoid(z/T) against the
    teacher's; summed over labels, batch mean."""
    t = temperature
    target = _binary_targets(teacher_logits, t)
    per = F.binary_cross_entropy_with_logits(student_logits.float() / t, target, reduction="none")
    loss = per.sum(-1).mean()
    return loss * (t * t) if t2_scaling else loss


@register_soft_loss("kl", multi_label=True)
def binary_kl_divergence(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    t2_scaling: bool = True,
) -> torch.Tensor:
    """Per label, binary KL(teacher_T || student_T); summed over labels, batch mean. It is
    the binary soft cross-entropy minus the teacher's binary entropy (0 when they match)."""
    t = temperature
    zt, zs = teacher_logits.float() / t, student_logits.float() / t
    p = torch.sigmoid(zt)
    # log p = logsigmoid(z), log(1 - p) = logsigmoid(-z): stable at large |z|
    kl = p * (F.logsigmoid(zt) - F.logsigmoid(zs)) + (1 - p) * (
        F.logsigmoid(-zt) - F.logsigmoid(-zs)
    )
    loss = kl.sum(-1).mean()
    return loss * (t * t) if t2_scaling else loss


register_soft_loss("logit_mse", multi_label=True)(logit_mse)


def hard_binary_cross_entropy(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy per label on the true 0/1 labels, summed over labels and
    averaged over the rows that have labels (unlabelled rows hold -1)."""
    labelled = (labels >= 0).all(-1)
    if not bool(labelled.any()):
        return student_logits.float().sum() * 0.0
    per = F.binary_cross_entropy_with_logits(
        student_logits.float()[labelled], labels[labelled].float(), reduction="none"
    )
    return per.sum(-1).mean()


def hard_cross_entropy(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the true labels, averaged over the rows that have one (label >= 0);
    0 for a batch of unlabelled (transfer) rows only. A 0/1 label matrix (multi-label)
    gets :func:`hard_binary_cross_entropy`."""
    if labels.dim() == 2:
        return hard_binary_cross_entropy(student_logits, labels)
    labelled = labels >= 0
    if bool(labelled.all()):
        return F.cross_entropy(student_logits.float(), labels)
    if not bool(labelled.any()):
        return student_logits.float().sum() * 0.0
    return F.cross_entropy(student_logits.float()[labelled], labels[labelled])


def prediction_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    soft_loss: str,
    temperature: float,
    alpha: float,
    t2_scaling: bool,
) -> torch.Tensor:
    """``(1 - alpha) * soft + alpha * hard``; alpha = 0 is pure distillation. A 0/1 label
    matrix (multi-label) takes the soft loss's per-label binary version."""
    soft_fn = get_soft_loss(soft_loss, multi_label=labels.dim() == 2)
    total = student_logits.new_zeros((), dtype=torch.float32)
    if alpha < 1.0:
        total = total + (1.0 - alpha) * soft_fn(
            student_logits, teacher_logits, temperature, t2_scaling
        )
    if alpha > 0.0:
        total = total + alpha * hard_cross_entropy(student_logits, labels)
    return total


# ---------------------------------------------------------------- intermediate losses


def masked_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the positions where ``mask`` is true.

    ``mask`` broadcasts against the inputs' leading dimensions; the mean is over the kept
    elements, so padding changes neither the value nor the gradient scale.
    """
    if student.shape != teacher.shape:
        raise ValueError(
            f"shape mismatch: student {tuple(student.shape)} vs {tuple(teacher.shape)}"
        )
    while mask.dim() < student.dim():
        mask = mask.unsqueeze(-1)
    weight = mask.to(student.dtype).expand_as(student)
    denom = weight.sum().clamp_min(1.0)
    diff = (student.float() - teacher.float()) ** 2
    return (diff * weight.float()).sum() / denom.float()


def hidden_mse(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    attention_mask: torch.Tensor,
    projection: torch.nn.Module | None = None,
) -> torch.Tensor:
    """MSE between ``projection(student_hidden)`` and the teacher's hidden states.

    Shapes (batch, seq, width); padded tokens (attention_mask 0) are excluded.
    """
    projected = projection(student_hidden) if projection is not None else student_hidden
    return masked_mse(projected, teacher_hidden, attention_mask.bool())


def pkd_loss(
    student_cls: list[torch.Tensor],
    teacher_cls: list[torch.Tensor],
    projection: torch.nn.Module | None = None,
) -> torch.Tensor:
    """PKD's patient loss (Sun et al. 2019): for each mapped layer pair, the squared L2
    distance between the L2-normalised [CLS] vectors of student and teacher, summed over
    the pairs and averaged over the batch.

    Each tensor is (batch, width) (the [CLS] hidden state of one layer); the student's go
    through ``projection`` first when the widths differ. No pair: zero.
    """
    if len(student_cls) != len(teacher_cls):
        raise ValueError(f"{len(student_cls)} student layers but {len(teacher_cls)} teacher")
    if not student_cls:
        return torch.zeros(())
    total = torch.zeros((), device=student_cls[0].device)
    for s, t in zip(student_cls, teacher_cls, strict=True):
        s = projection(s) if projection is not None else s
        s_n = F.normalize(s.float(), p=2.0, dim=-1)
        t_n = F.normalize(t.float(), p=2.0, dim=-1)
        total = total + ((s_n - t_n) ** 2).sum(-1).mean()
    return total


def embedding_mse(
    student_embeddings: torch.Tensor,
    teacher_embeddings: torch.Tensor,
    attention_mask: torch.Tensor,
    projection: torch.nn.Module | None = None,
) -> torch.Tensor:
    """MSE of the embedding-layer outputs (hidden state 0), through the same projection."""
    return hidden_mse(student_embeddings, teacher_embeddings, attention_mask, projection)


def attention_mse(
    student_scores: torch.Tensor,
    teacher_scores: torch.Tensor,
    attention_mask: torch.Tensor,
) -> torch.Tensor:
    """MSE of pre-softmax attention scores (batch, heads, query, key), TinyBERT style.

    Pairs where the query or the key is padding are excluded (their scores are
    meaningless). When head counts differ, each side is averaged over its heads first.
    """
    if student_scores.shape[1] != teacher_scores.shape[1]:
        student_scores = student_scores.mean(dim=1, keepdim=True)
        teacher_scores = teacher_scores.mean(dim=1, keepdim=True)
    valid = attention_mask.bool()
    pair = valid[:, None, :, None] & valid[:, None, None, :]  # (B, 1, Lq, Lk)
    pair = pair.expand(-1, student_scores.shape[1], -1, -1)
    return masked_mse(student_scores, teacher_scores, pair)


IntermediateLoss = Callable[..., torch.Tensor]
INTERMEDIATE_LOSSES: dict[str, IntermediateLoss] = {
    "hidden_mse": hidden_mse,
    "attention_mse": attention_mse,
    "embedding_mse": embedding_mse,
}
