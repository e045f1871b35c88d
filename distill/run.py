"""One distillation run: config in, student and the full metric set out."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import save_student
from .config import RunConfig
from .context import RunContext, prepare_context
from .device import deterministic, seed_everything
from .early_exit import EarlyExitModel
from .evaluate import measure_latency_ms
from .families import StudentModel
from .mapping import resolve_mapping
from .metric_registry import evaluation, per_label_metrics
from .metrics import softmax
from .multilabel_metrics import binary_view
from .plots import confidence_scatter, reliability_diagram, speed_sweep_plot
from .speed_sweep import speed_sweep
from .student import build_student
from .train import Distiller, EvalCallback, EvalEvent, ProgressFn


@dataclass
class DistillResult:
    """One distillation's outcome (``kdsearch.Result``): ``metrics`` (every registered metric
    on the validation split, with ``params``, ``latency_ms`` and ``speedup_vs_teacher``),
    ``history`` (one :class:`EvalEvent` per evaluation), the trained ``student`` and
    :meth:`summary` (what ``metrics.json`` holds).

    >>> import kdsearch
    >>> result = kdsearch.distill_one({
    ...     "data": {"source": "builtin:rotten_tomatoes", "max_train": 64, "max_eval": 48,
    ...              "max_length": 32},
    ...     "teacher": {"model": "builtin:minilm-l6", "finetune": False},
    ...     "student": {"kind": "truncate", "num_layers": 1},
    ...     "train": {"epochs": 1, "batch_size": 32, "eval_every_steps": 1},
    ...     "metrics": {"latency_repeats": 1},
    ... })
    >>> [e.step for e in result.history]
    [1, 2]
    >>> result.summary()["data"]["n_train"]
    64
    """

    metrics: dict[str, Any]
    history: list[EvalEvent]
    student: StudentModel
    student_info: dict[str, Any]
    ctx: RunContext
    eval_student_logits: np.ndarray
    seconds: float
    steps: int
    examples_seen: int
    layer_mapping: list[int] = field(default_factory=list)
    n_train_rows: int = 0  # labelled + transfer + augmented rows trained on
    speed_sweep: list[dict[str, Any]] | None = None  # early-exit students only
    # multi-label: each label's own metrics on the validation split (label -> metric -> value)
    per_label: dict[str, dict[str, Any]] | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-ready record of the run (what ``metrics.json`` holds)."""
        return {
            "metrics": self.metrics,
            "student": self.student_info,
            "layer_mapping": self.layer_mapping,
            "teacher": {"fingerprint": self.ctx.teacher.fingerprint, **self.ctx.teacher.info},
            "data": {
                "source": self.ctx.splits.source,
                "labels": self.ctx.splits.label_names,
                "n_train": len(self.ctx.splits.train),
                "n_transfer": len(self.ctx.transfer_texts),
                "n_train_rows": self.n_train_rows,
                "n_eval": len(self.ctx.splits.eval),
            },
            "history": [asdict(e) for e in self.history],
            **({"speed_sweep": self.speed_sweep} if self.speed_sweep is not None else {}),
            **({"per_label": self.per_label} if self.per_label is not None else {}),
            "seconds": round(self.seconds, 3),
            "steps": self.steps,
            "examples_per_second": round(self.examples_seen / max(self.seconds, 1e-9), 3),
        }


def run_distillation(
    cfg: RunConfig,
    *,
    ctx: RunContext | None = None,
    callback: EvalCallback | None = None,
    progress: ProgressFn | None = None,
) -> DistillResult:
    """Distill one student. Pass ``ctx`` to reuse a study's prepared data and teacher."""
    ctx = ctx or prepare_context(cfg)
    started = time.perf_counter()
    with deterministic(ctx.device):
        seed_everything(cfg.train.seed)
        student, info = build_student(
            cfg.student, ctx.teacher, ctx.splits, cfg.distill.layer_mapping, cfg.train.seed
        )
        mapping = (
            resolve_mapping(cfg.distill.layer_mapping, student.num_layers, ctx.teacher.num_layers)
            if student.num_layers
            else []
        )
        rows, logits = ctx.training_rows(cfg.data.augment.copies, cfg.data.use_transfer)
        distiller = Distiller(ctx, student, cfg, mapping, rows, logits)
        student = distiller.student  # the method's model (e.g. with early exits)
        trained = distiller.fit(callback, progress)
        info = {**info, **student.describe()}
    seconds = time.perf_counter() - started
    metrics = dict(trained.history[-1].metrics)
    metrics["params"] = info["params"]
    m = cfg.metrics
    student.set_attention("sdpa")  # timed as it is served, not with the training-time kernel
    latency = measure_latency_ms(
        student,
        ctx.eval,
        cfg.train.eval_batch_size,
        ctx.pad_id,
        ctx.device,
        m.latency_batches,
        ctx.bf16,
        m.latency_repeats,
    )
    teacher_latency = ctx.teacher_latency_ms(
        cfg.train.eval_batch_size, m.latency_batches, m.latency_repeats
    )
    metrics["latency_ms"] = round(latency, 4)
    metrics["speedup_vs_teacher"] = round(teacher_latency / max(latency, 1e-9), 3)
    sweep = (
        speed_sweep(student, ctx, cfg, teacher_latency)
        if isinstance(student, EarlyExitModel)
        else None
    )
    eval_logits = distiller.last_eval_logits.numpy()
    per_label = None
    if ctx.splits.multi_label:
        e = evaluation(
            ctx.teacher_outputs.eval_logits.numpy(),
            eval_logits,
            ctx.eval.labels.numpy(),
            **m.options(),
        )
        per_label = per_label_metrics(e, ctx.splits.label_names)
    return DistillResult(
        metrics=metrics,
        history=trained.history,
        student=student,
        student_info=info,
        ctx=ctx,
        eval_student_logits=eval_logits,
        seconds=seconds,
        steps=trained.steps,
        examples_seen=trained.examples_seen,
        layer_mapping=mapping,
        n_train_rows=len(rows),
        speed_sweep=sweep,
        per_label=per_label,
    )


# The plots a trial stores (speed_sweep: early-exit students only).
TRIAL_PLOTS = ("reliability", "confidence_scatter", "speed_sweep")


def write_plots(result: DistillResult, out_dir: Path, cfg: RunConfig) -> dict[str, Path]:
    """The reliability diagram and confidence scatter (a multi-label run's as every
    (example, label) pair's binary decision, reference side "label applies")."""
    t_logits = result.ctx.teacher_outputs.eval_logits.numpy()
    labels = result.ctx.eval.labels.numpy()
    reference = cfg.metrics.reference_class
    if result.ctx.splits.multi_label:
        t_probs, flat = binary_view(t_logits, labels)
        s_probs, _ = binary_view(result.eval_student_logits, labels)
        labels, reference = flat, 1
    else:
        t_probs, s_probs = softmax(t_logits), softmax(result.eval_student_logits)
    out_dir.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Path] = {}
    if result.speed_sweep is not None:
        extra["speed_sweep"] = speed_sweep_plot(
            result.speed_sweep,
            out_dir / "speed_sweep.png",
            teacher_accuracy=result.metrics.get("teacher_accuracy"),
        )
    return {
        **extra,
        "reliability": reliability_diagram(
            t_probs,
            s_probs,
            labels,
            out_dir / "reliability.png",
            n_bins=cfg.metrics.ece_bins,
            mode=cfg.metrics.ece_mode,
        ),
        "confidence_scatter": confidence_scatter(
            t_probs,
            s_probs,
            labels,
            out_dir / "confidence_scatter.png",
            reference_class=reference,
        ),
    }


def write_outputs(
    result: DistillResult, cfg: RunConfig, out_dir: str | Path, *, onnx: bool = True
) -> dict[str, Path]:
    """``metrics.json``, ``checkpoint/`` (see :mod:`distill.checkpoint`) and ``plots/*.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = save_student(
        result.student,
        result.ctx.teacher.tokenizer,
        out / "checkpoint",
        result.ctx.splits.label_names,
        extra={"metrics": result.metrics, "config": cfg.model_dump(mode="json")},
        onnx=onnx,
        max_length=cfg.data.max_length,
        pair=result.ctx.splits.is_pair,
        multi_label=result.ctx.splits.multi_label,
    )
    plots = write_plots(result, out / "plots", cfg)
    summary = result.summary()
    summary["config"] = cfg.model_dump(mode="json")
    metrics_path = out / "metrics.json"
    metrics_path.write_text(json.dumps(summary, indent=2, allow_nan=False))
    return {"metrics": metrics_path, "checkpoint": ckpt, **plots}
