"""The worker loop: find runnable studies, prepare each once, run trials until the budget.

Any number of workers (processes, GPUs, machines) may share one database. Each trial slot
is claimed atomically in ``kdsearch_study_runs`` before ``study.optimize(n_trials=1)``, so
the study never runs more than ``n_trials``. ``optimize`` (not bare ask/tell) keeps Optuna's
heartbeat alive; a killed worker's trial goes stale, is failed and retried by another
worker (``SlotReleasingRetry``), and its slot returns to the budget.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState

from kdsearch.distill.config import RunConfig
from kdsearch.distill.context import RunContext, context_key, prepare_context
from kdsearch.distill.errors import KDSearchError

from . import final, jobs, tables
from . import study as study_mod
from .artifacts import apply_keep_policy, make_artifact_store
from .objective import StopRequested, TrialObjective, build_run_config
from .preflight import check_study_against_context
from .proxy import TrialBeat, connect_proxy
from .pruners import make_pruner
from .samplers import make_sampler
from .spec import StudySpec
from .storage import (
    GRACE_PERIOD_S,
    HEARTBEAT_INTERVAL_S,
    database_unavailable,
    first_line,
    make_engine,
    make_storage,
    schema_ready,
    wait_for_database,
)

log = logging.getLogger("kdsearch.worker")


@dataclass
class WorkerOptions:
    database_url: str
    artifact_dir: str
    worker_index: int = 0
    only_studies: set[str] | None = None  # None: every active study
    exit_when_idle: bool = False  # stop once the chosen studies are no longer active
    poll_s: float = 2.0
    heartbeat_interval: int = HEARTBEAT_INTERVAL_S
    grace_period: int = GRACE_PERIOD_S
    torch_threads: int | None = None
    max_trials: int | None = None  # this worker's own cap (tests, draining)
    device: str | None = None  # overrides the spec's training.device
    # replaces training.device "auto" only (``serve`` gives each worker its own GPU this way)
    auto_device: str | None = None
    # how long to wait at start-up for a database that is not up yet
    startup_wait_s: float = 300.0
    # grpc://HOST:PORT: Optuna's tables through ``kdsearch storage-proxy`` (search.proxy)
    storage_url: str | None = None


@dataclass
class Worker:
    options: WorkerOptions
    on_trial: Callable[[str, FrozenTrial], None] | None = None
    stopping: bool = False
    aborting: bool = False
    trials_run: int = 0
    _contexts: dict[str, RunContext] = field(default_factory=dict)
    # budget slots to give back once the database answers again (see _one_trial)
    _unreleased: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        o = self.options
        self.beat: Callable[[int], TrialBeat] | None = None
        if o.storage_url:  # no pooled connection: the proxy holds the database's
            self.engine = wait_for_database(
                lambda: schema_ready(make_engine(o.database_url, pooled=False)), o.startup_wait_s
            )
            proxy = connect_proxy(o.storage_url, o.startup_wait_s)
            self.storage: optuna.storages.BaseStorage = proxy
            self.beat = functools.partial(TrialBeat, proxy, o.heartbeat_interval)
        else:
            self.engine = wait_for_database(
                lambda: schema_ready(make_engine(o.database_url)), o.startup_wait_s
            )
            self.storage = wait_for_database(
                lambda: make_storage(
                    o.database_url,
                    self.engine,
                    heartbeat_interval=o.heartbeat_interval,
                    grace_period=o.grace_period,
                ),
                o.startup_wait_s,
            )
        self.store = make_artifact_store(o.artifact_dir)
        if o.torch_threads:
            import torch

            torch.set_num_threads(o.torch_threads)

    # ------------------------------------------------------------------ control
    def request_stop(self) -> None:
        """Finish the current trial, then exit."""
        self.stopping = True

    def request_abort(self) -> None:
        """Abandon the current trial at its next evaluation (its slot is given back)."""
        self.stopping = self.aborting = True

    # ------------------------------------------------------------------ main loop
    def run(self) -> int:
        """Work until stopped (or idle, with ``exit_when_idle``); returns trials run.

        A database outage (a restart, a network cut) is waited out, not fatal: the round is
        retried with a growing pause. A trial it interrupted is retried: its slot goes back
        to the budget, or its heartbeat stops and it is failed and retried as stale.
        """
        log.info("worker %d ready: looking for studies", self.options.worker_index)
        outage = 0
        while not self.stopping:
            try:
                done = self._round()
            except Exception as exc:
                if not database_unavailable(exc):
                    raise
                outage += 1
                pause = min(30.0, self.options.poll_s * 2 ** min(outage, 4))
                log.warning(
                    "the database is unreachable (%s); retrying in %.0fs", first_line(exc), pause
                )
                self._sleep(pause)
                continue
            if outage:
                log.info("the database answers again")
                outage = 0
            if done:
                break
        return self.trials_run

    def _round(self) -> bool:
        """One pass over the active studies; True when this worker should exit."""
        while self._unreleased:
            tables.release(self.engine, self._unreleased[0])
            self._unreleased.pop(0)
        runs = [
            r
            for r in tables.active(self.engine)
            if self.options.only_studies is None or r.study_name in self.options.only_studies
        ]
        if not runs and self.options.exit_when_idle:
            return True
        worked = False
        for run in runs:
            if self.stopping:
                break
            worked |= self._work_on(run)
        if self._cap_reached():
            return True
        if not worked:
            self._sleep(self.options.poll_s)
        return False

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            time.sleep(min(0.5, end - time.monotonic()))

    def _cap_reached(self) -> bool:
        cap = self.options.max_trials
        return cap is not None and self.trials_run >= cap

    def _device(self, asked: str) -> str:
        if self.options.device:
            return self.options.device
        if asked == "auto" and self.options.auto_device:
            return self.options.auto_device
        return asked

    def _context(self, spec: StudySpec) -> RunContext:
        cfg: RunConfig = build_run_config(spec, {})
        cfg.train.device = self._device(cfg.train.device)
        key = context_key(cfg)
        if key not in self._contexts:
            if len(self._contexts) >= 2:  # bounded memory: drop the oldest study's data
                self._contexts.pop(next(iter(self._contexts)))
            self._contexts[key] = prepare_context(cfg)
        return self._contexts[key]

    def _load(self, run: tables.StudyRun) -> tuple[StudySpec, optuna.Study]:
        spec = StudySpec.model_validate(run.spec)
        spec.training.device = self._device(spec.training.device)
        study = optuna.load_study(
            study_name=run.study_name,
            storage=self.storage,
            sampler=make_sampler(spec, self.options.worker_index),
            pruner=make_pruner(spec),
        )
        return spec, study

    def _work_on(self, run: tables.StudyRun) -> bool:
        name = run.study_name
        spec, study = self._load(run)
        # Fail the trials of dead workers now, even when this worker has no slot to claim.
        optuna.storages.fail_stale_trials(study)
        if run.status not in tables.ACTIVE:
            return True
        if self._search_done(study, run):
            return self._final_phase(run, spec, study)
        if run.claimed >= run.n_trials and not self._deadline_passed(run):
            return False
        if run.status == "queued":  # visible progress while the teacher and data are prepared
            tables.set_status(self.engine, name, "running")
            log.info("study %s: preparing data, teacher and teacher logits", name)
        try:
            ctx = self._context(spec)
            check_study_against_context(spec, ctx)
        except KDSearchError as exc:
            msg = f"preparing the study failed: {exc}"
            log.error("study %s: %s", name, msg)
            tables.set_status(self.engine, name, "failed", msg)
            return True
        objective = TrialObjective(
            spec, ctx, self.engine, self.store, should_abort=lambda: self.aborting, beat=self.beat
        )
        worked = False
        while not self.stopping and not self._cap_reached():
            run = tables.get(self.engine, name) or run
            if run.status not in tables.ACTIVE or self._deadline_passed(run):
                break
            failures, last_error = study_mod.consecutive_failures(study.get_trials(deepcopy=False))
            if failures >= spec.max_consecutive_failures:
                tables.set_status(
                    self.engine,
                    name,
                    "failed",
                    f"{failures} trials failed in a row; the last error: {last_error}",
                )
                break
            if not tables.claim(self.engine, name):
                break
            worked = True
            self._one_trial(study, objective, name, spec)
        run = tables.get(self.engine, name) or run
        if run.status in tables.ACTIVE and self._search_done(study, run):
            self._final_phase(run, spec, study)
        return worked

    def _one_trial(
        self, study: optuna.Study, objective: TrialObjective, name: str, spec: StudySpec
    ) -> None:
        objective.last_trial_number = None
        objective.database_failed = False
        try:
            study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=True)
        except Exception:
            # Optuna could not start or store the trial (the database went away). A trial
            # never created gives its slot back when the database returns; one left RUNNING
            # goes stale, and the stale callback fails, retries and releases it.
            if objective.last_trial_number is None:
                self._unreleased.append(name)
            raise
        self.trials_run += 1
        number = objective.last_trial_number
        mine = study.get_trials(deepcopy=False)[number] if number is not None else None
        if mine is not None and (mine.user_attrs.get("abandoned") or objective.database_failed):
            tables.release(self.engine, name)
        try:
            deleted = apply_keep_policy(self.store, self.engine, study, spec.keep)
            if deleted:
                log.info("study %s: deleted checkpoints of trials %s", name, deleted)
        except Exception as exc:  # never lose the study over housekeeping
            log.warning("study %s: keep policy failed: %s", name, exc)
        if mine is not None:
            log.info("study %s trial %d: %s", name, mine.number, mine.state.name)
            if self.on_trial is not None:
                self.on_trial(name, mine)

    def _deadline_passed(self, run: tables.StudyRun) -> bool:
        if run.deadline_at is None:
            return False
        deadline = run.deadline_at
        if deadline.tzinfo is None:
            deadline = deadline.replace(tzinfo=tables.now().tzinfo)
        return tables.now() >= deadline

    def _search_done(self, study: optuna.Study, run: tables.StudyRun) -> bool:
        """The budget is spent (or the time is up) and no trial is still running."""
        trials = study.get_trials(deepcopy=False)
        live = [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        spent = run.claimed >= run.n_trials or self._deadline_passed(run)
        return spent and not live

    # ------------------------------------------------------------------ the study's end
    @property
    def worker_id(self) -> str:
        return f"{os.uname().nodename}:{os.getpid()}:{self.options.worker_index}"

    def _final_phase(self, run: tables.StudyRun, spec: StudySpec, study: optuna.Study) -> bool:
        """Plan, run and summarise the study's end jobs (test scoring, confirmation), then
        complete it. Several workers share the jobs; the one that sees none left
        summarises (idempotently). Returns whether this worker ran a job."""
        name = run.study_name
        trials = study.get_trials(deepcopy=False)
        kept = {
            a["trial_number"] for a in tables.list_artifacts(self.engine, name, kind="checkpoint")
        }
        wanted = final.plan(spec, trials, study.directions, kept)
        if wanted and jobs.plan(self.engine, name, wanted):
            log.info("study %s: search done; %d end-of-study jobs planned", name, len(wanted))
        ctx: RunContext | None = None
        if wanted:
            try:
                ctx = self._context(spec)
            except KDSearchError as exc:
                tables.set_status(self.engine, name, "failed", f"preparing the study failed: {exc}")
                return True
        worked = False
        while ctx is not None and not self.stopping:
            now_run = tables.get(self.engine, name)
            if now_run is None or now_run.status not in tables.ACTIVE:  # cancelled
                return worked
            job = jobs.claim(self.engine, name, self.worker_id, self.options.grace_period)
            if job is None:
                break
            worked = True
            self._run_job(job, spec, ctx, trials)
        left = jobs.progress(self.engine, name)
        if left["pending"] or left["running"]:
            return worked
        teacher_rows = final.teacher_rows_for(spec, ctx) if ctx is not None else None
        results = final.summarize(spec, trials, jobs.list_jobs(self.engine, name), teacher_rows)
        results["jobs"] = left
        results["not_scored"] = final.not_scored(spec, trials, study.directions, kept)
        tables.set_results(self.engine, name, results)
        with contextlib.suppress(Exception):  # for optuna-dashboard; the registry is the record
            study.set_user_attr(final.RESULTS_ATTR, results)
        if tables.set_status(self.engine, name, "completed"):
            log.info("study %s: completed; recommended trial %s", name, results["recommended"])
        return worked

    def _run_job(
        self, job: jobs.Job, spec: StudySpec, ctx: RunContext, trials: list[FrozenTrial]
    ) -> None:
        def on_eval(event: object) -> None:
            if self.aborting:
                raise StopRequested("the worker was stopped during this job")

        what = f"study {job.study_name}: {job.kind} job for trial {job.trial_number}"
        log.info("%s (seed %d) started", what, job.seed)
        with jobs.Heartbeat(self.engine, job.id, self.worker_id, self.options.heartbeat_interval):
            try:
                result = final.run_job(
                    job, spec, ctx, trials, self.engine, self.store, on_eval=on_eval
                )
            except StopRequested:
                jobs.release(self.engine, job.id, self.worker_id)
                return
            except Exception as exc:
                if database_unavailable(exc):
                    raise  # the job goes stale and is taken again
                error = (
                    str(exc) if isinstance(exc, KDSearchError) else f"{type(exc).__name__}: {exc}"
                )
                log.error("%s failed: %s", what, error)
                jobs.finish(self.engine, job.id, self.worker_id, error=error)
                return
        jobs.finish(self.engine, job.id, self.worker_id, result=result)
        log.info("%s (seed %d) done", what, job.seed)


def default_threads(n_workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, n_workers))


__all__ = ["StopRequested", "Worker", "WorkerOptions", "default_threads"]
