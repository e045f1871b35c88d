"""One Optuna trial = one distillation run with sampled settings, scored and stored."""

from __future__ import annotations

import contextlib
import tempfile
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
from sqlalchemy.engine import Engine

from kdsearch.distill.config import RunConfig
from kdsearch.distill.context import RunContext
from kdsearch.distill.errors import KDSearchError
from kdsearch.distill.metric_registry import worst_value
from kdsearch.distill.run import TRIAL_PLOTS, run_distillation, write_outputs
from kdsearch.distill.train import EvalEvent

from .artifacts import probe_writable, upload_trial_outputs
from .leaderboard import PER_LABEL_ATTR, SPEED_SWEEP_ATTR
from .pruning import IntermediateReporter
from .space import apply_params, sample_params
from .spec import StudySpec
from .storage import database_unavailable, first_line


def build_run_config(spec: StudySpec, params: dict[str, Any]) -> RunConfig:
    """The engine config for one trial: spec's fixed parts + sampled parameters."""
    t = spec.training
    base: dict[str, Any] = {
        "data": spec.data.model_dump(),
        "teacher": spec.teacher.model_dump(),
        "student": spec.student.model_dump(exclude_none=True),
        "metrics": spec.metrics.model_dump(),
        "distill": {},
        "train": {
            "seed": spec.seed,
            "eval_every_steps": t.eval_every_steps,
            "eval_batch_size": t.eval_batch_size,
            "max_grad_norm": t.max_grad_norm,
            "group_by_length": t.group_by_length,
            "device": t.device,
            "bf16": t.bf16,
        },
    }
    if "student_layers" in params:
        base["student"].pop("keep_layers", None)
    return RunConfig.model_validate(apply_params(base, params))


def objective_values(spec: StudySpec, metrics: dict[str, Any]) -> list[float]:
    out = []
    for metric in spec.metric_names:
        value = metrics.get(metric)
        # undefined (e.g. conf_sigma with < 2 both-correct examples): the metric's worst
        # value, so the sampler steers away from it
        out.append(float(value) if value is not None else worst_value(metric))
    return out


class StopRequested(Exception):
    """The worker was asked to stop now; the trial is abandoned (and retried elsewhere)."""


class TrialObjective:
    """Callable for ``study.optimize``; shares one prepared context across trials."""

    def __init__(
        self,
        spec: StudySpec,
        ctx: RunContext,
        engine: Engine,
        artifact_store: Any,
        should_abort: Callable[[], bool] = lambda: False,
        beat: Callable[[int], contextlib.AbstractContextManager[Any]] | None = None,
    ) -> None:
        self.spec, self.ctx, self.engine, self.store = spec, ctx, engine, artifact_store
        self.space = spec.parsed_space()
        self.should_abort = should_abort
        # a trial's heartbeat where the storage keeps none itself (``search.proxy``)
        self.beat = beat
        self.last_trial_number: int | None = None
        self.database_failed = False  # the last trial failed because the database did
        self.multi = len(spec.objectives) > 1
        self.report = IntermediateReporter.from_spec(spec)

    def _on_eval(self, trial: optuna.Trial) -> Callable[[EvalEvent], None]:
        def callback(event: EvalEvent) -> None:
            if self.should_abort():
                raise StopRequested("the worker was stopped during this trial")
            values = objective_values(self.spec, event.metrics)
            self.report(trial, event.step, event.total_steps, values, event.final)

        return callback

    def __call__(self, trial: optuna.Trial) -> Sequence[float] | float:
        self.last_trial_number = trial.number
        beating = self.beat(trial._trial_id) if self.beat else contextlib.nullcontext()
        try:
            with beating:
                return self._run(trial)
        except optuna.TrialPruned:
            raise
        except StopRequested as exc:
            trial.set_user_attr("abandoned", True)
            trial.set_user_attr("error", str(exc))
            raise
        except KDSearchError as exc:
            trial.set_user_attr("error", str(exc))
            raise
        except Exception as exc:
            if database_unavailable(exc):
                # The database failed, not the trial: the worker gives its slot back, so
                # the budget still buys n_trials real results.
                self.database_failed = True
                with contextlib.suppress(Exception):
                    trial.set_user_attr("abandoned", True)
                    trial.set_user_attr("error", f"the database was unreachable: {first_line(exc)}")
                raise
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            trial.set_user_attr("traceback", traceback.format_exc()[-4000:])
            raise

    def _run(self, trial: optuna.Trial) -> Sequence[float] | float:
        probe_writable(self.store)
        params = sample_params(self.space, trial, self.spec.student.family)
        cfg = build_run_config(self.spec, params)
        trial.set_user_attr("config", cfg.model_dump(mode="json"))
        trial.set_user_attr("method", cfg.distill.method)  # shown by optuna-dashboard
        result = run_distillation(cfg, ctx=self.ctx, callback=self._on_eval(trial))
        for name, value in result.metrics.items():
            trial.set_user_attr(f"metric:{name}", value)
        trial.set_user_attr("student", result.student_info)
        trial.set_user_attr("train_seconds", round(result.seconds, 3))
        trial.set_user_attr("n_train_rows", result.n_train_rows)
        if result.speed_sweep is not None:
            trial.set_user_attr(SPEED_SWEEP_ATTR, result.speed_sweep)
        if result.per_label is not None:
            trial.set_user_attr(PER_LABEL_ATTR, result.per_label)
        for c in self.spec.constraints:
            trial.set_constraint(f"{c.metric}", c.violation(result.metrics.get(c.metric)))
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_outputs(result, cfg, Path(tmp), onnx=self.spec.keep.onnx)
            plots = {k: v for k, v in paths.items() if k in TRIAL_PLOTS}
            upload_trial_outputs(self.store, self.engine, trial, paths["checkpoint"], plots)
        values = objective_values(self.spec, result.metrics)
        return values if self.multi else values[0]
