"""The study spec: one pydantic model shared by the CLI and the REST API.

A spec naming only the teacher and the data is complete: every other field has a default
(a TinyBERT-style space over temperature, alpha, learning rate and epochs; objectives
accuracy up and conf_sigma down; TPE; 20 trials).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kdsearch.distill.config import (
    BUILTIN_DATA_LABELS,
    BUILTIN_TEACHER_LAYERS,
    DataConfig,
    MetricsConfig,
    StudentConfig,
    TeacherConfig,
    check_device,
)
from kdsearch.distill.metric_registry import objective_metrics

from .pruners import pruner_names, resolve_pruner
from .samplers import sampler_names
from .space import PARAMS, ParamSpec, check_param_values, parse_param

# The names the registries hold (search.samplers, search.pruners), as the types pydantic
# checks and the OpenAPI schema lists.
if TYPE_CHECKING:
    SamplerName = str
    PrunerName = str
else:
    SamplerName = Literal[sampler_names()]
    PrunerName = Literal[pruner_names()]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_metric(v: str) -> str:
    """A metric a study may optimise or constrain (``distill.metric_registry``)."""
    known = objective_metrics()
    if v not in known:
        raise ValueError(f"unknown metric {v!r}: use one of {', '.join(known)}")
    return v


class Objective(_Strict):
    metric: str = Field(
        description="the metric to optimise (docs/metrics.md), scored on the validation split; "
        "an undefined value (e.g. conf_sigma with fewer than 2 rows both models get right) "
        "counts as the metric's worst"
    )
    direction: Literal["maximize", "minimize"] | None = Field(
        default=None,
        description="which way is better; null: the metric's natural direction (filled in "
        "when the spec is read)",
    )

    _metric = field_validator("metric")(_check_metric)

    @model_validator(mode="after")
    def _default_direction(self) -> Objective:
        if self.direction is None:
            self.direction = objective_metrics()[self.metric]
        return self


class Constraint(_Strict):
    """``metric <= max`` and/or ``metric >= min`` (at least one bound; ``min <= max``); e.g.
    conf_sigma <= kappa."""

    metric: str = Field(
        description="the metric to bound (docs/metrics.md), read from the trial's validation "
        "metrics after training; a trial without a value for it breaks the constraint"
    )
    max: float | None = Field(
        default=None, description="upper bound: the trial needs metric <= max; null: none"
    )
    min: float | None = Field(
        default=None, description="lower bound: the trial needs metric >= min; null: none"
    )

    _metric = field_validator("metric")(_check_metric)

    @model_validator(mode="after")
    def _one_bound(self) -> Constraint:
        if self.max is None and self.min is None:
            raise ValueError(f"constraint on {self.metric!r} needs 'max' or 'min'")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"constraint on {self.metric!r}: min {self.min} > max {self.max}")
        return self

    def violation(self, value: float | None) -> float:
        """Optuna's convention: <= 0 is feasible. A missing value is infeasible (1.0)."""
        if value is None:
            return 1.0
        parts = []
        if self.max is not None:
            parts.append(value - self.max)
        if self.min is not None:
            parts.append(self.min - value)
        return max(parts)


class PrunerSpec(_Strict):
    """How trials are stopped early (``search.pruning``).

    The settings after ``name`` are read by kdsearch's rules, ``dominance`` and
    ``pareto_rank``, which compare a trial with the finished ones at the same progress (the
    share of its own training budget done). ``median``, ``hyperband`` and
    ``successive_halving`` are Optuna's pruners with their own settings, for single-objective
    studies only: a multi-objective study reads ``median`` as ``dominance`` and refuses the
    other two.
    """

    name: PrunerName = Field(
        default="auto",
        description="the pruner (the pruner table under Samplers and pruners says what each "
        "does); `auto`: `median` with one objective, `pareto_rank` with several (on the "
        "tabular KD benchmark it kept the front at the same compute where `dominance` lost "
        "5 %); `none`: no pruning",
    )
    min_trials: int = Field(
        default=4,
        ge=1,
        description="`dominance`, `pareto_rank`: prune nothing until at least this many "
        "finished (complete or pruned) trials have reached the trial's progress",
    )
    min_dominating: int = Field(
        default=2,
        ge=1,
        description="`dominance`: stop a trial that at least this many finished trials "
        "Pareto-dominate at the same progress",
    )
    percentile: float = Field(
        default=75.0,
        gt=0,
        le=100,
        description="`pareto_rank`: stop a trial when at least this percentage of the finished "
        "trials sit in a strictly better non-dominated front at the same progress (50: a "
        "median rule on Pareto ranks)",
    )
    warmup_steps: int = Field(
        default=0,
        ge=0,
        description="`dominance`, `pareto_rank`: never prune a trial before this many of its "
        "optimiser steps",
    )
    warmup_progress: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="`dominance`, `pareto_rank`: never prune a trial before this share (0 to "
        "1) of its training budget is done",
    )


class KeepPolicy(_Strict):
    """Which trials keep their student checkpoint: the Pareto front, or the top k."""

    policy: Literal["pareto", "top_k"] = Field(
        default="pareto",
        description="`pareto`: the trials on the Pareto front (the unconstrained front while "
        "no trial meets the constraints); `top_k`: the first `k` trials in the recommendation "
        "order; the recommended trial always keeps its checkpoint, and at the end only trials "
        "that kept one are scored on the test split",
    )
    k: int = Field(default=3, ge=1, description="how many checkpoints `top_k` keeps")
    onnx: bool = Field(
        default=True,
        description="also export each trial's student to model.onnx in its checkpoint (a few "
        "seconds per trial); false skips the export",
    )


class ConfirmPolicy(_Strict):
    """After the search, re-run the winners with fresh seeds so a lucky trial cannot win."""

    seeds: int | None = Field(
        default=None,
        ge=0,
        le=20,
        description="re-runs per confirmed trial, each with a training seed the search never "
        "used (`seed + 1`, `seed + 2`, ...); 0 turns confirmation off; null: 3 for studies of "
        "10 trials or more, off below",
    )
    top_k: int = Field(
        default=0,
        ge=0,
        le=20,
        description="besides the recommended trial, confirm the first k other Pareto-front "
        "trials in the recommendation order (those whose checkpoint is kept)",
    )

    def seeds_for(self, n_trials: int) -> int:
        if self.seeds is not None:
            return self.seeds
        return 3 if n_trials >= 10 else 0


class TrainingDefaults(_Strict):
    """Training settings that are not searched (searched ones come from search_space)."""

    eval_every_steps: int | None = Field(
        default=None,
        ge=1,
        description="evaluate on the validation split (and let the pruner decide) every this "
        "many optimiser steps and at the end of each training stage; null: once per epoch",
    )
    eval_batch_size: int = Field(
        default=128,
        ge=1,
        description="rows per batch when evaluating, scoring the test split and timing latency",
    )
    max_grad_norm: float = Field(
        default=1.0,
        gt=0,
        description="the gradients' total norm is clipped to this before each optimiser step",
    )
    group_by_length: bool = Field(
        default=True,
        description="batch training rows of similar length together (less padding); the "
        "batch order stays random",
    )
    device: str = Field(
        default="auto",
        description="`auto` (the first visible CUDA device, else the CPU), `cpu`, `cuda` or "
        "`cuda:N`; a worker started with a device of its own (`kdsearch worker --device`) "
        "uses that",
    )
    bf16: bool = Field(
        default=True,
        description="autocast to bfloat16 on CUDA, for training and for the teacher's "
        "fine-tuning and outputs (ignored on the CPU, which stays float32)",
    )

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        return check_device(v, "training.device")


def default_space() -> dict[str, Any]:
    return {
        "temperature": {"low": 1.0, "high": 8.0, "log": True},
        "alpha": {"low": 0.0, "high": 1.0},
        "lr": {"low": 3e-5, "high": 3e-4, "log": True},
        "epochs": {"low": 1, "high": 3},
    }


class StudySpec(_Strict):
    """A distillation study: what to distill, what to search, how to score, how long.

    Every field has a default (docs/spec.md lists them all); a spec names what differs:

    >>> import kdsearch
    >>> spec = kdsearch.StudySpec.model_validate(
    ...     {"n_trials": 8, "constraints": [{"metric": "conf_sigma", "max": 0.08}]}
    ... )
    >>> spec.sampler, spec.metric_names, spec.directions
    ('tpe', ['accuracy', 'conf_sigma'], ['maximize', 'minimize'])
    >>> kdsearch.StudySpec.model_validate({"n_trials": 0})
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for StudySpec
    n_trials
      Input should be greater than or equal to 1 ...
    """

    name: str | None = Field(
        default=None,
        max_length=120,
        description="the study's name, its id in the CLI and in Python; null: `kd-` and a "
        "random suffix (the REST API always gives a study its own id and keeps this as a label)",
    )
    data: DataConfig = Field(
        default_factory=DataConfig,
        description="the labelled data, its columns and its train, validation and test splits",
    )
    teacher: TeacherConfig = Field(
        default_factory=TeacherConfig,
        description="the teacher model and how it is fine-tuned",
    )
    student: StudentConfig = Field(
        default_factory=StudentConfig, description="the student's family and shape"
    )
    metrics: MetricsConfig = Field(
        default_factory=MetricsConfig, description="settings of the metrics a trial records"
    )
    training: TrainingDefaults = Field(
        default_factory=TrainingDefaults,
        description="training settings every trial shares (the searched ones come from "
        "`search_space`)",
    )
    search_space: dict[str, Any] = Field(
        default_factory=default_space,
        description="the parameters each trial samples, each fixed, a range or a list of "
        "choices (see Search space)",
    )
    objectives: list[Objective] = Field(
        default_factory=lambda: [Objective(metric="accuracy"), Objective(metric="conf_sigma")],
        min_length=1,
        max_length=4,
        description="the metrics the search optimises, each at most once; several make a "
        "multi-objective search for a Pareto front",
    )
    constraints: list[Constraint] = Field(
        default_factory=list,
        max_length=8,
        description="bounds on metrics: a trial that breaks one is never recommended and is "
        "left off the Pareto front",
    )
    n_trials: int = Field(
        default=20,
        ge=1,
        le=10_000,
        description="the search's budget in trials; a trial that fails with an error counts, "
        "one abandoned by a stopped worker or a database outage does not",
    )
    timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="seconds from the study's creation (time in the queue included) after "
        "which no new trial starts; running trials finish and the study's end still runs; "
        "null: no time limit",
    )
    sampler: SamplerName = Field(
        default="tpe",
        description="how trials choose their parameters (the sampler table under Samplers and "
        "pruners)",
    )
    pruner: PrunerSpec = Field(
        default_factory=PrunerSpec, description="how unpromising trials are stopped early"
    )
    seed: int = Field(
        default=0,
        description="seeds the sampler (plus 1000 times the worker's index, so parallel "
        "workers differ), every trial's training and the bootstrap intervals; confirmation "
        "re-runs use `seed + 1`, `seed + 2`, ...",
    )
    keep: KeepPolicy = Field(
        default_factory=KeepPolicy, description="which trials keep their student checkpoint"
    )
    confirm: ConfirmPolicy = Field(
        default_factory=ConfirmPolicy,
        description="re-running the winners with fresh seeds after the search",
    )
    max_consecutive_failures: int = Field(
        default=5,
        ge=1,
        description="the study fails once this many trials in a row have failed with an error",
    )

    @field_validator("search_space")
    @classmethod
    def _space(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(v) - set(PARAMS))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {', '.join(unknown)}: searchable parameters are "
                f"{', '.join(PARAMS)}"
            )
        for name, raw in v.items():
            check_param_values(parse_param(name, raw))  # raises ValueError naming it
        return v

    @model_validator(mode="after")
    def _consistent(self) -> StudySpec:
        names = [o.metric for o in self.objectives]
        if len(set(names)) != len(names):
            raise ValueError("objectives: each metric may appear only once")
        check_known_limits(self)
        if not resolve_pruner(self.pruner.name, len(self.objectives)).any_objectives:
            raise ValueError(
                f"pruner.name {self.pruner.name!r} prunes on one objective and this study has "
                f"{len(self.objectives)}: use 'dominance' or 'pareto_rank' (or 'none')"
            )
        if self.sampler == "grid":
            ranged = [n for n, p in self.parsed_space().items() if not p.is_grid_ready()]
            if ranged:
                raise ValueError(
                    f"sampler 'grid' needs every parameter fixed or categorical; "
                    f"{', '.join(ranged)} are ranges: give them 'choices' or use tpe"
                )
            size = 1
            for p in self.parsed_space().values():
                size *= len(p.grid_values())
            if self.n_trials > size:
                raise ValueError(
                    f"n_trials ({self.n_trials}) exceeds the grid's {size} combinations: "
                    f"set n_trials to at most {size}"
                )
        return self

    def parsed_space(self) -> dict[str, ParamSpec]:
        return {name: parse_param(name, raw) for name, raw in self.search_space.items()}

    @property
    def directions(self) -> list[str]:
        return [str(o.direction) for o in self.objectives]

    @property
    def metric_names(self) -> list[str]:
        return [o.metric for o in self.objectives]


def deepest_student(spec: StudySpec) -> tuple[str, int] | None:
    """(field, layers) of the deepest transformer student a trial could build."""
    s = spec.student
    space = spec.parsed_space()
    if "student_layers" in space:
        p = space["student_layers"]
        values = [p.fixed] if p.is_fixed else list(p.choices) or [p.high]
        return "search_space.student_layers", int(max(int(v) for v in values))
    if s.family != "transformer" and "family" not in space:
        return None
    if s.keep_layers:
        return "student.keep_layers", max(s.keep_layers)
    return "student.num_layers", s.num_layers


def check_known_limits(spec: StudySpec) -> None:
    """Limits known without reading user files: the builtin teacher's depth, the builtin
    datasets' number of labels (a teacher folder or a CSV is checked when the study is
    prepared, before any trial)."""
    depth = BUILTIN_TEACHER_LAYERS.get(spec.teacher.model)
    deepest = deepest_student(spec)
    if depth is not None and deepest is not None and spec.student.kind == "truncate":
        field, layers = deepest
        if layers > depth and field == "student.keep_layers":
            raise ValueError(
                f"{field}: teacher layer {layers} does not exist; {spec.teacher.model} has "
                f"{depth} layers (numbered 1..{depth})"
            )
        if layers > depth:
            raise ValueError(
                f"{field}: a student of {layers} layers is deeper than the teacher "
                f"{spec.teacher.model} ({depth} layers): use at most {depth}"
            )
    check_family_method_pairs(spec)
    n_labels = BUILTIN_DATA_LABELS.get(spec.data.source)
    if n_labels is not None and spec.metrics.reference_class >= n_labels:
        raise ValueError(
            f"metrics.reference_class: {spec.data.source} has {n_labels} labels (ids 0.."
            f"{n_labels - 1}): use a reference class below {n_labels}"
        )


def _values(spec: StudySpec, name: str, default: str) -> list[str]:
    p = spec.parsed_space().get(name)
    if p is None:
        return [default]
    return [str(v) for v in ([p.fixed] if p.is_fixed else p.choices)]


def check_family_method_pairs(spec: StudySpec) -> None:
    """Every method a trial could draw runs with the student it could draw (e.g.
    BERT-of-Theseus needs a truncated transformer student; early exit at least 2 layers).
    Only transformer trials draw a method; the other families train with kd."""
    from pydantic import ValidationError

    from kdsearch.distill.config import RunConfig

    student = spec.student.model_dump(exclude_none=True)
    families = _values(spec, "family", spec.student.family)
    if "method" in spec.search_space and "transformer" not in families:
        raise ValueError(
            "search_space.method: a method is chosen for transformer students only (the other "
            f"families train with kd), and no trial draws one (student family "
            f"{', '.join(families)}): remove method, or search family with transformer"
        )
    layers = spec.parsed_space().get("student_layers")
    depths: list[Any] = [None]
    if layers is not None:
        depths = [layers.fixed] if layers.is_fixed else list(layers.choices or (layers.low,))
    for family, method, depth in itertools.product(families, _values(spec, "method", "kd"), depths):
        if family != "transformer" and method != "kd":
            continue  # such a trial does not draw a method (see search.space.sample_params)
        shape = {} if depth is None or family != "transformer" else {"num_layers": int(depth)}
        try:
            RunConfig.model_validate(
                {
                    "data": spec.data.model_dump(),  # e.g. multi-label data refuses early exits
                    "student": {**student, "family": family, **shape},
                    "distill": {"method": method},
                }
            )
        except ValidationError as exc:
            why = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
            at = f" of {depth} layers (search_space.student_layers)" if shape else ""
            data = " on multi-label data" if spec.data.multi_label else ""
            raise ValueError(
                f"search_space.method: method {method!r} cannot run with student family "
                f"{family!r}{at}{data}: {why}"
            ) from None
