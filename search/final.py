"""The end of a study: its winners scored on the test split and confirmed with fresh seeds.

When the search budget is spent, the worker plans these jobs (see :mod:`search.jobs`):

- ``test``: the recommended trial and every Pareto-front trial, their stored checkpoints
  scored once on the held-out test split (all data metrics, under ``test:`` names);
- ``confirm``: the recommended trial (and the first ``confirm.top_k`` other front trials
  in recommendation order) trained again with ``confirm.seeds`` fresh training seeds, each
  scored on validation and on test.

:func:`summarize` turns the finished jobs into the study's final results: test metrics per
trial, confirmed mean ± std per metric (validation and test), bootstrap 95% intervals over
the test rows for accuracy and conf_sigma, and the final recommendation. With confirmed
trials, the recommendation is THE RULE (see :mod:`search.leaderboard`) applied to their
confirmed *validation* means, so a lucky seed cannot win and the test split stays unused
for selection.
"""

from __future__ import annotations

import statistics
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from kdsearch.distill.checkpoint import load_student
from kdsearch.distill.config import RunConfig
from kdsearch.distill.context import RunContext
from kdsearch.distill.errors import KDSearchError
from kdsearch.distill.held_out import score_on_test, teacher_outcomes
from kdsearch.distill.run import run_distillation
from kdsearch.distill.train import EvalEvent

from . import tables
from .artifacts import CHECKPOINT
from .bootstrap import bootstrap_metrics
from .jobs import Job
from .leaderboard import number_or_none, pareto_front, recommendation_key, recommended_trial
from .spec import StudySpec

# the final results are also a study user attribute, so optuna-dashboard shows them
RESULTS_ATTR = "kdsearch:final_results"


class FinalJobError(KDSearchError):
    """A test or confirmation job could not run (its checkpoint is gone, ...)."""


def _ranked_front(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]) -> list:
    return sorted(pareto_front(trials, directions), key=recommendation_key)


def to_score(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]) -> list[int]:
    """The trials the study's end scores on the test split: recommended, then the front."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = recommended_trial(complete)
    if best is None:
        return []
    front = [t.number for t in _ranked_front(complete, directions) if t.number != best.number]
    return [best.number, *front]


def plan(
    spec: StudySpec,
    trials: Sequence[FrozenTrial],
    directions: Sequence[StudyDirection],
    with_checkpoint: set[int] | None = None,
) -> list[tuple[str, int, int]]:
    """The (kind, trial_number, seed) jobs the study's end needs, in running order.

    Test scoring reads a trial's stored checkpoint: with ``with_checkpoint`` given, trials
    outside it (the keep policy removed theirs) are left out (see :func:`not_scored`).
    """
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = recommended_trial(complete)
    if best is None:
        return []
    front = [t.number for t in _ranked_front(complete, directions) if t.number != best.number]
    wanted: list[tuple[str, int, int]] = []
    seeds = spec.confirm.seeds_for(spec.n_trials)
    if seeds:
        # only trials whose checkpoint is kept: the confirmed winner is the one served
        others = [n for n in front if with_checkpoint is None or n in with_checkpoint]
        for number in [best.number, *others[: spec.confirm.top_k]]:
            wanted += [("confirm", number, spec.seed + i) for i in range(1, seeds + 1)]
    if spec.data.test_fraction > 0:
        scored = [best.number, *front]
        if with_checkpoint is not None:
            scored = [n for n in scored if n in with_checkpoint]
        wanted += [("test", n, spec.seed) for n in scored]
    return wanted


def not_scored(
    spec: StudySpec,
    trials: Sequence[FrozenTrial],
    directions: Sequence[StudyDirection],
    with_checkpoint: set[int],
) -> list[dict[str, Any]]:
    """The recommended/front trials whose test score cannot be made, and why."""
    if spec.data.test_fraction <= 0:
        return []
    return [
        {
            "trial": n,
            "reason": f"its checkpoint was removed by keep.policy {spec.keep.policy!r} "
            f"(k={spec.keep.k}); keep.policy 'pareto' keeps every trial the test split scores",
        }
        for n in to_score(trials, directions)
        if n not in with_checkpoint
    ]


def _trial_config(trial: FrozenTrial, spec: StudySpec) -> RunConfig:
    cfg = RunConfig.model_validate(trial.user_attrs["config"])
    cfg.train.device = spec.training.device
    return cfg


def _load_checkpoint(store: Any, engine: Any, study_name: str, number: int, folder: Path) -> Path:
    found = [
        a
        for a in tables.list_artifacts(engine, study_name, kind="checkpoint")
        if a["trial_number"] == number
    ]
    if not found:
        raise FinalJobError(
            f"trial {number} has no stored checkpoint to score on the test split (the keep "
            "policy removed it, or it was never written): use keep.policy 'pareto'"
        )
    archive = folder / CHECKPOINT
    src = store.open_reader(found[-1]["artifact_id"])
    try:
        with archive.open("wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    finally:
        src.close()
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(folder, filter="data")
    return folder / "checkpoint"


def run_job(
    job: Job,
    spec: StudySpec,
    ctx: RunContext,
    trials: Sequence[FrozenTrial],
    engine: Any,
    store: Any,
    on_eval: Callable[[EvalEvent], None] | None = None,
) -> dict[str, Any]:
    """Run one job and return its JSON-able result."""
    trial = trials[job.trial_number]
    cfg = _trial_config(trial, spec)
    if job.kind == "test":
        with tempfile.TemporaryDirectory() as tmp:
            folder = _load_checkpoint(store, engine, job.study_name, trial.number, Path(tmp))
            student, _ = load_student(folder)
            student.to(ctx.device)
            metrics, rows = score_on_test(student, ctx, cfg)
        return {"test_metrics": metrics, "rows": rows.as_json()}
    cfg.train.seed = job.seed
    result = run_distillation(cfg, ctx=ctx, callback=on_eval)
    out: dict[str, Any] = {"metrics": result.metrics, "seconds": round(result.seconds, 3)}
    if ctx.has_test():
        metrics, rows = score_on_test(result.student, ctx, cfg)
        out.update(test_metrics=metrics, rows=rows.as_json())
    return out


# --------------------------------------------------------------------------- summary


def _mean_std(runs: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    """Per metric: mean and sample std (0 for one run) over runs with a number for it."""
    names = sorted({k for r in runs for k in r})
    mean, std = {}, {}
    for name in names:
        values = [v for r in runs if (v := number_or_none(r.get(name))) is not None]
        if not values:
            continue
        mean[name] = round(statistics.fmean(values), 6)
        std[name] = round(statistics.stdev(values), 6) if len(values) > 1 else 0.0
    return mean, std


def _confirmed_key(number: int, mean: dict[str, float]) -> tuple[bool, float, bool, float, int]:
    """THE RULE on confirmed validation means: accuracy down, conf_sigma up, number."""
    acc, sigma = mean.get("accuracy"), mean.get("conf_sigma")
    return (
        acc is None,
        -acc if acc is not None else 0.0,
        sigma is None,
        sigma if sigma is not None else 0.0,
        number,
    )


def summarize(
    spec: StudySpec,
    trials: Sequence[FrozenTrial],
    finished: Sequence[Job],
    teacher_rows: dict[str, list[Any]] | None,
) -> dict[str, Any]:
    """The study's final results from its finished jobs (see the module docstring)."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    original = recommended_trial(complete)
    test: dict[str, dict[str, Any]] = {}
    test_rows: dict[int, list[dict[str, Any]]] = {}
    errors: list[dict[str, Any]] = []
    runs: dict[int, list[Job]] = {}
    for job in finished:
        if job.state == "failed":
            errors.append(
                {"kind": job.kind, "trial": job.trial_number, "seed": job.seed, "error": job.error}
            )
        elif job.state == "done" and job.result is not None:
            if job.kind == "test":
                test[str(job.trial_number)] = job.result["test_metrics"]
                test_rows[job.trial_number] = [job.result["rows"]]
            else:
                runs.setdefault(job.trial_number, []).append(job)

    def ci(outcomes: list[dict[str, Any]]) -> dict[str, Any] | None:
        if teacher_rows is None or not outcomes:
            return None
        found = bootstrap_metrics(
            teacher_rows["labels"],
            teacher_rows["pred"],
            teacher_rows["p_ref"],
            [o["pred"] for o in outcomes],
            [o["p_ref"] for o in outcomes],
            seed=spec.seed,
        )
        return {k: v.as_json() for k, v in found.items()}

    confirmed: dict[str, dict[str, Any]] = {}
    for number, done in sorted(runs.items()):
        done.sort(key=lambda j: j.seed)
        mean, std = _mean_std([j.result["metrics"] for j in done if j.result])
        entry: dict[str, Any] = {"seeds": [j.seed for j in done], "mean": mean, "std": std}
        with_test = [j.result for j in done if j.result and "test_metrics" in j.result]
        if with_test:
            test_runs = [r["test_metrics"] for r in with_test]
            entry["test_mean"], entry["test_std"] = _mean_std(test_runs)
            # the interval of the test mean over the fresh seeds
            entry["ci"] = ci([r["rows"] for r in with_test])
        confirmed[str(number)] = entry
    best_number: int | None
    if confirmed:
        best_number = min(
            (int(n) for n in confirmed), key=lambda n: _confirmed_key(n, confirmed[str(n)]["mean"])
        )
        rule = "confirmed validation means"
    else:
        best_number = original.number if original is not None else None
        rule = "validation"
    # the interval of each scored trial's own test result
    intervals = {str(n): found for n, rows in test_rows.items() if (found := ci(rows))}
    return {
        "recommended": best_number,
        "recommended_before_confirmation": original.number if original is not None else None,
        "recommended_by": rule,
        "test": test,
        "confirmed": confirmed,
        "intervals": intervals,
        "n_test_rows": len(teacher_rows["labels"]) if teacher_rows else 0,
        "errors": errors,
    }


def teacher_rows_for(spec: StudySpec, ctx: RunContext) -> dict[str, list[Any]] | None:
    """The teacher's test-row outcomes the bootstrap intervals need; None without a test
    split."""
    if not ctx.has_test():
        return None
    return teacher_outcomes(ctx, spec.metrics.reference_class)
