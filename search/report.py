"""The confidence report of a study, gathered as plain data (rendering: ``report_html``).

Everything comes from what the study stored: the trials' ``metric:<name>`` user attributes,
the leaderboard and recommended trial of :mod:`search.leaderboard` (THE RULE lives there,
not here), the study spec's ``conf_sigma`` constraint (kappa), and the PNG plots each trial
uploaded to the artifact store. Parameter importances are Optuna's
(``optuna.importance.get_param_importances``), estimated per metric.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState, create_trial
from sqlalchemy.engine import Engine

from kdsearch.distill.metric_registry import objective_metrics

from . import tables
from .leaderboard import (
    SPEED_SWEEP_ATTR,
    is_feasible,
    leaderboard,
    pareto_front,
    recommended_trial,
    trial_row,
)
from .report_verdict import Verdict, held_out, judge, metric
from .study import SPEC_ATTR, state_counts

__all__ = [
    "IMPORTANCE_METRICS",
    "MIN_IMPORTANCE_TRIALS",
    "PLOT_NAMES",
    "Importance",
    "Point",
    "Report",
    "SpeedSweep",
    "Verdict",
    "build_report",
    "metric",
    "param_importances",
    "points",
    "spec_kappa",
    "trial_plots",
]

PLOT_NAMES = ("reliability", "confidence_scatter")
SWEEP_PLOT = "speed_sweep"  # early-exit trials only
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMPORTANCE_METRICS = ("accuracy", "conf_sigma")  # directions: distill.metric_registry
MIN_IMPORTANCE_TRIALS = 3
ROUGH_IMPORTANCE_TRIALS = 10


@dataclass(frozen=True)
class Point:
    """A COMPLETE trial with both accuracy and conf_sigma, as drawn on the Pareto plot."""

    number: int
    accuracy: float
    conf_sigma: float
    feasible: bool
    pareto: bool


@dataclass(frozen=True)
class Importance:
    """Importances of the searched parameters for one metric; ``note`` says why none."""

    metric: str
    direction: str
    n_trials: int
    values: dict[str, float] = field(default_factory=dict)
    note: str | None = None


@dataclass
class Report:
    study_id: str
    name: str | None
    status: str
    error: str | None
    objectives: list[str]
    directions: list[str]
    counts: dict[str, int]
    kappa: float | None
    kappa_source: Literal["spec", "override", "none"]
    rows: list[dict[str, Any]]
    points: list[Point]
    recommended: dict[str, Any] | None
    teacher_accuracy: float | None
    plots: dict[str, bytes]
    plot_notes: list[str]
    importances: list[Importance]
    verdict: Verdict
    generated_at: str
    speed_sweep: SpeedSweep | None = None


@dataclass
class SpeedSweep:
    """An early-exit trial's accuracy–speed–sigma trade-off (no retraining per speed)."""

    number: int
    recommended: bool
    rows: list[dict[str, Any]]
    png: bytes | None
    notes: list[str]


def speed_sweep(
    trials: Sequence[FrozenTrial],
    rows: Sequence[dict[str, Any]],
    best: FrozenTrial | None,
    engine: Engine | None,
    store: Any | None,
    study_id: str,
) -> SpeedSweep | None:
    """The recommended trial's sweep when it exits early, else the best-ranked early-exit
    trial's (leaderboard order), else None."""
    by_number = {t.number: t for t in trials}
    order = ([best.number] if best is not None else []) + [int(r["number"]) for r in rows]
    for number in order:
        t = by_number.get(number)
        sweep = t.user_attrs.get(SPEED_SWEEP_ATTR) if t is not None else None
        if t is None or t.state != TrialState.COMPLETE or not isinstance(sweep, list):
            continue
        plots, notes = trial_plots(engine, store, study_id, number, (SWEEP_PLOT,))
        is_best = best is not None and best.number == number
        return SpeedSweep(number, is_best, sweep, plots.get(SWEEP_PLOT), notes)
    return None


def spec_thresholds(spec: Any) -> list[float] | None:
    """The operating thresholds of a stored spec (``metrics.decision_thresholds``)."""
    metrics = spec.get("metrics") if isinstance(spec, dict) else None
    found = metrics.get("decision_thresholds") if isinstance(metrics, dict) else None
    return [float(t) for t in found] if isinstance(found, list) else None


def spec_kappa(spec: Any) -> float | None:
    """kappa of a stored spec: the tightest ``max`` of its ``conf_sigma`` constraints."""
    constraints = spec.get("constraints") if isinstance(spec, dict) else None
    bounds = [
        float(c["max"])
        for c in constraints or []
        if isinstance(c, dict) and c.get("metric") == "conf_sigma" and c.get("max") is not None
    ]
    return min(bounds) if bounds else None


def points(trials: Sequence[FrozenTrial]) -> list[Point]:
    """COMPLETE trials with accuracy and conf_sigma, and the 2-D front (accuracy up, sigma down).

    The front is :func:`search.leaderboard.pareto_front` on stand-in trials whose values are
    (accuracy, conf_sigma) and whose constraints are the trial's own, whatever the study's
    objectives are.
    """
    proxies: list[FrozenTrial] = []
    for t in trials:
        acc, sigma = metric(t, "accuracy"), metric(t, "conf_sigma")
        if t.state != TrialState.COMPLETE or acc is None or sigma is None:
            continue
        proxy = create_trial(values=[acc, sigma], constraints=dict(t.constraints) or None)
        proxy.number = t.number
        proxies.append(proxy)
    front = {
        p.number for p in pareto_front(proxies, [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE])
    }
    return [
        Point(
            number=p.number,
            accuracy=float(p.values[0]),
            conf_sigma=float(p.values[1]),
            feasible=is_feasible(p),
            pareto=p.number in front,
        )
        for p in sorted(proxies, key=lambda p: p.number)
    ]


@contextlib.contextmanager
def _quiet_in_memory_storage() -> Iterator[None]:
    """No "A new study created in memory" line per report (Optuna logs it at INFO)."""
    log = logging.getLogger("optuna.storages._in_memory")
    old = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(old)


def param_importances(
    trials: Sequence[FrozenTrial], name: str, direction: Literal["maximize", "minimize"]
) -> Importance:
    """``get_param_importances`` for one metric over the COMPLETE trials that have it."""
    usable = [
        (t, v)
        for t in trials
        if t.state == TrialState.COMPLETE and (v := metric(t, name)) is not None
    ]
    n = len(usable)
    if n < MIN_IMPORTANCE_TRIALS:
        return Importance(
            name,
            direction,
            n,
            note=f"Too few completed trials with {name} ({n}; at least "
            f"{MIN_IMPORTANCE_TRIALS} are needed) to estimate parameter importances.",
        )
    names = sorted({p for t, _ in usable for p in t.params})
    # a parameter only some trials sample (a method's or a family's own) cannot be ranked
    # against the rest: Optuna's estimators need every trial to have it
    partial = [p for p in names if any(p not in t.params for t, _ in usable)]
    varying = [
        p for p in names if p not in partial and len({repr(t.params.get(p)) for t, _ in usable}) > 1
    ]
    if not varying:
        return Importance(
            name,
            direction,
            n,
            note="No searched parameter took more than one value in these trials, so "
            "there is nothing to rank.",
        )
    with _quiet_in_memory_storage():  # in memory: the usable trials only
        study = optuna.create_study(direction=direction)
    for t, v in usable:
        study.add_trial(create_trial(params=t.params, distributions=t.distributions, value=v))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = optuna.importance.get_param_importances(study, params=varying)
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        return Importance(name, direction, n, note=f"Importances could not be estimated: {exc}")
    clean = {k: float(v) for k, v in values.items() if math.isfinite(float(v))}
    constant = [p for p in names if p not in varying and p not in partial]
    notes = []
    if n < ROUGH_IMPORTANCE_TRIALS:
        notes.append(f"Estimated from only {n} trials: a rough hint, not a ranking to trust.")
    if constant:
        notes.append(f"Left out (one value in every trial): {', '.join(constant)}.")
    if partial:
        notes.append(
            f"Left out (sampled in some trials only, e.g. one method's own): {', '.join(partial)}."
        )
    return Importance(name, direction, n, values=clean, note=" ".join(notes) or None)


def trial_plots(
    engine: Engine | None,
    store: Any | None,
    study_id: str,
    number: int,
    names: Sequence[str] = PLOT_NAMES,
) -> tuple[dict[str, bytes], list[str]]:
    """The trial's stored plot PNGs by name (see ``PLOT_NAMES``), and why any is missing."""
    if engine is None:
        return {}, ["No kdsearch database was given, so no plot could be looked up."]
    stored = {
        a["name"]: a
        for a in tables.list_artifacts(engine, study_id, kind="plot")
        if a["trial_number"] == number
    }
    plots: dict[str, bytes] = {}
    notes: list[str] = []
    for name in names:
        found = stored.get(f"{name}.png")
        if found is None:
            notes.append(f"Trial {number} stored no {name}.png.")
            continue
        if store is None:
            notes.append(f"{name}.png of trial {number}: no artifact store was given.")
            continue
        try:
            reader = store.open_reader(found["artifact_id"])
            try:
                data = reader.read()
            finally:
                reader.close()
        except Exception as exc:
            notes.append(
                f"{name}.png of trial {number} is recorded but could not be read from the "
                f"artifact store ({type(exc).__name__})."
            )
            continue
        if not data.startswith(PNG_MAGIC):
            notes.append(f"{name}.png of trial {number} in the artifact store is not a PNG.")
            continue
        plots[name] = data
    return plots, notes


def build_report(
    study: optuna.Study,
    engine: Engine | None,
    store: Any | None,
    *,
    kappa: float | None = None,
    now: dt.datetime | None = None,
) -> Report:
    """Everything the report page shows. ``kappa`` overrides the spec's ``conf_sigma`` bound."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    run = tables.get(engine, study.study_name) if engine is not None else None
    spec = study.user_attrs.get(SPEC_ATTR) or (run.spec if run is not None else None)
    from_spec = spec_kappa(spec)
    if kappa is not None:
        source: Literal["spec", "override", "none"] = "override"
    else:
        kappa, source = from_spec, "spec" if from_spec is not None else "none"

    final = run.results if run is not None else None
    best = recommended_trial(trials, final)
    rows = leaderboard(study, final=final)
    recommended = None
    if best is not None:
        front = {r["number"] for r in rows if r["pareto"]}
        recommended = trial_row(best, front, final)
        recommended["chosen_by"] = (final or {}).get("recommended_by", "validation")
    plots, plot_notes = (
        ({}, []) if best is None else trial_plots(engine, store, study.study_name, best.number)
    )
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    candidates = ([best] if best is not None else []) + complete
    teacher = next(
        (v for t in candidates if (v := metric(t, "teacher_accuracy")) is not None), None
    )
    name = spec.get("name") if isinstance(spec, dict) else None
    return Report(
        study_id=study.study_name,
        name=str(name) if name is not None else None,
        status=run.status if run is not None else "unknown",
        error=run.error if run is not None else None,
        objectives=list(study.metric_names or []),
        directions=[d.name.lower() for d in study.directions],
        counts=state_counts(trials),
        kappa=kappa,
        kappa_source=source,
        rows=rows,
        points=points(trials),
        recommended=recommended,
        teacher_accuracy=teacher,
        plots=plots,
        plot_notes=plot_notes,
        importances=[
            param_importances(trials, m, objective_metrics()[m]) for m in IMPORTANCE_METRICS
        ],
        verdict=judge(
            trials,
            best,
            kappa,
            teacher,
            held_out(best.number, final) if best else None,
            spec_thresholds(spec),
        ),
        generated_at=(now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M:%S UTC"),
        speed_sweep=speed_sweep(trials, rows, best, engine, store, study.study_name),
    )
