"""The worker loop: find runnable studies, prepare each once, run trials until the budget.

Any number of workers (processes, GPUs, machines) may share one database. Each trial slot
is claimed atomically in ``kdsearch_study_runs`` before ``study.optimize(n_trials=1)``, so
the study never runs more than ``n_trials``. ``optimize`` (not bare ask/tell) keeps Optuna's
heartbeat alive; a killed worker's trial goes stale, is failed and retried by another
worker (``SlotReleasingRetry``), and its slot returns to the budget.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState

from distill.config import RunConfig
from distill.context import RunContext, context_key, prepare_context
from distill.errors import KDSearchError

from . import registry
from . import study as study_mod
from .artifacts import apply_keep_policy, make_artifact_store
from .objective import StopRequested, TrialObjective, build_run_config
from .preflight import check_study_against_context
from .spec import StudySpec
from .storage import (
    GRACE_PERIOD_S,
    HEARTBEAT_INTERVAL_S,
    database_unavailable,
    first_line,
    make_engine,
    make_storage,
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
        self.engine = wait_for_database(lambda: make_engine(o.database_url), o.startup_wait_s)
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
            registry.release(self.engine, self._unreleased[0])
            self._unreleased.pop(0)
        runs = [
            r
            for r in registry.active(self.engine)
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

    def _load(self, run: registry.StudyRun) -> tuple[StudySpec, optuna.Study]:
        spec = StudySpec.model_validate(run.spec)
        spec.training.device = self._device(spec.training.device)
        study = optuna.load_study(
            study_name=run.study_name,
            storage=self.storage,
            sampler=study_mod.make_sampler(spec, self.options.worker_index),
            pruner=study_mod.make_pruner(spec),
        )
        return spec, study

    def _work_on(self, run: registry.StudyRun) -> bool:
        name = run.study_name
        spec, study = self._load(run)
        # Fail the trials of dead workers now, even when this worker has no slot to claim.
        optuna.storages.fail_stale_trials(study)
        if self._finish_if_done(study, run):
            return True
        if run.claimed >= run.n_trials and not self._deadline_passed(run):
            return False
        if run.status == "queued":  # visible progress while the teacher and data are prepared
            registry.set_status(self.engine, name, "running")
            log.info("study %s: preparing data, teacher and teacher logits", name)
        try:
            ctx = self._context(spec)
            check_study_against_context(spec, ctx)
        except KDSearchError as exc:
            msg = f"preparing the study failed: {exc}"
            log.error("study %s: %s", name, msg)
            registry.set_status(self.engine, name, "failed", msg)
            return True
        objective = TrialObjective(
            spec, ctx, self.engine, self.store, should_abort=lambda: self.aborting
        )
        worked = False
        while not self.stopping and not self._cap_reached():
            run = registry.get(self.engine, name) or run
            if run.status not in registry.ACTIVE or self._deadline_passed(run):
                break
            failures, last_error = study_mod.consecutive_failures(study.get_trials(deepcopy=False))
            if failures >= spec.max_consecutive_failures:
                registry.set_status(
                    self.engine,
                    name,
                    "failed",
                    f"{failures} trials failed in a row; the last error: {last_error}",
                )
                break
            if not registry.claim(self.engine, name):
                break
            worked = True
            self._one_trial(study, objective, name, spec)
        self._finish_if_done(study, registry.get(self.engine, name) or run)
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
            registry.release(self.engine, name)
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

    def _deadline_passed(self, run: registry.StudyRun) -> bool:
        if run.deadline_at is None:
            return False
        deadline = run.deadline_at
        if deadline.tzinfo is None:
            deadline = deadline.replace(tzinfo=registry.now().tzinfo)
        return registry.now() >= deadline

    def _finish_if_done(self, study: optuna.Study, run: registry.StudyRun) -> bool:
        """Mark the study completed once its budget is spent (or its time is up)."""
        if run.status not in registry.ACTIVE:
            return True
        trials = study.get_trials(deepcopy=False)
        live = [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        spent = run.claimed >= run.n_trials or self._deadline_passed(run)
        if spent and not live:
            return registry.set_status(self.engine, run.study_name, "completed")
        return False


def default_threads(n_workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, n_workers))


__all__ = ["StopRequested", "Worker", "WorkerOptions", "default_threads"]
