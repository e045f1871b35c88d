"""Run a whole study on this machine: create it, start N workers, wait, report."""

from __future__ import annotations

import multiprocessing as mp
import signal
from collections.abc import Callable
from types import FrameType

from optuna.trial import FrozenTrial

from kdsearch.distill.plugins import load_plugins

from . import study as study_mod
from .spec import StudySpec
from .storage import make_engine, make_storage, prepare_schema
from .worker import Worker, WorkerOptions, default_threads


def install_signal_handlers(worker: Worker) -> None:
    """First SIGTERM/SIGINT: finish the current trial. Second: abandon it now."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if worker.stopping:
            worker.request_abort()
        else:
            worker.request_stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def worker_main(options: WorkerOptions) -> int:
    """Entry point of a worker process (a fresh interpreter: it imports the plug-ins too)."""
    load_plugins()
    worker = Worker(options)
    install_signal_handlers(worker)
    return worker.run()


def create_study(spec: StudySpec, database_url: str, owner: str | None = None) -> str:
    engine = make_engine(database_url)
    prepare_schema(engine)
    storage = make_storage(database_url, engine)
    return study_mod.create(engine, storage, spec, owner=owner)


def run_study(
    spec: StudySpec,
    database_url: str,
    artifact_dir: str,
    workers: int = 1,
    on_trial: Callable[[str, FrozenTrial], None] | None = None,
    study_name: str | None = None,
) -> str:
    """Create (unless ``study_name`` is given) and run a study to the end of its budget."""
    name = study_name or create_study(spec, database_url)
    threads = default_threads(workers)
    options = [
        WorkerOptions(
            database_url,
            artifact_dir,
            worker_index=i,
            only_studies={name},
            exit_when_idle=True,
            torch_threads=threads,
        )
        for i in range(workers)
    ]
    if workers == 1:
        worker = Worker(options[0], on_trial=on_trial)
        install_signal_handlers(worker)
        worker.run()
        return name
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=worker_main, args=(o,), daemon=False) for o in options]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join()
        raise
    return name
