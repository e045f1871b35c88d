"""The accuracy–speed–sigma trade-off of one early-exit student, over a sweep of speeds.

No retraining: every exit's validation logits are computed once and each speed's answers
are read off them (:func:`distill.early_exit.take_exits`, the same rule the model applies
in one pass); only the latency is measured anew at each speed, the same way as the trial's
own ``latency_ms``. A row per speed: ``speed``, ``accuracy``, ``conf_sigma``, ``agreement``,
``mean_exit_layer``, ``latency_ms``, ``speedup_vs_teacher`` (and ``trained``: the speed the
trial chose).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .early_exit import EarlyExitModel, take_exits
from .evaluate import all_exit_logits, measure_latency_ms
from .metric_registry import confidence_metrics

if TYPE_CHECKING:
    from .config import RunConfig
    from .context import RunContext

SWEEP_SPEEDS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
SWEEP_KEYS = ("accuracy", "conf_sigma", "agreement")


def speed_sweep(
    student: EarlyExitModel, ctx: RunContext, cfg: RunConfig, teacher_latency_ms: float
) -> list[dict[str, Any]]:
    """One row per speed of :data:`SWEEP_SPEEDS` and the trained speed, in speed order."""
    t, m = cfg.train, cfg.metrics
    trained = student.speed
    exits = all_exit_logits(student, ctx.eval, t.eval_batch_size, ctx.pad_id, ctx.device, ctx.bf16)
    rows: list[dict[str, Any]] = []
    try:
        for speed in sorted({*SWEEP_SPEEDS, trained}):
            logits, layers = take_exits(exits, speed)
            metrics = confidence_metrics(
                ctx.teacher_outputs.eval_logits.numpy(),
                logits.numpy(),
                ctx.eval.labels.numpy(),
                **m.options(),
            )
            student.speed = speed
            latency = measure_latency_ms(
                student,
                ctx.eval,
                t.eval_batch_size,
                ctx.pad_id,
                ctx.device,
                m.latency_batches,
                ctx.bf16,
                m.latency_repeats,
            )
            rows.append(
                {
                    "speed": speed,
                    "trained": speed == trained,
                    **{k: metrics[k] for k in SWEEP_KEYS},
                    "mean_exit_layer": round(float(layers.float().mean()), 4),
                    "latency_ms": round(latency, 4),
                    "speedup_vs_teacher": round(teacher_latency_ms / max(latency, 1e-9), 3),
                }
            )
    finally:
        student.speed = trained
    return rows
