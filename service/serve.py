"""``kdsearch serve``: the REST API plus N embedded worker processes on one database.

Shutdown is graceful: on SIGTERM/Ctrl-C uvicorn stops taking requests, then each worker
gets SIGTERM and finishes its current trial (a second signal abandons it, and its slot
returns to the budget). Queued and running studies stay in the database, so a restarted
server's workers pick them up where they stopped.
"""

from __future__ import annotations

import contextlib
import ipaddress
import multiprocessing as mp
import os
import secrets
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

from kdsearch.distill.errors import ConfigError
from kdsearch.distill.plugins import load_plugins
from kdsearch.search.runner import install_signal_handlers
from kdsearch.search.worker import Worker, WorkerOptions, default_threads

from .keys import any_active_key
from .logs import configure_logging
from .settings import Settings


def is_loopback(host: str) -> bool:
    if host in {"localhost", ""}:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class WorkerPool:
    """Worker processes (spawned, so no torch state is shared with the server)."""

    options: list[WorkerOptions]
    procs: list[BaseProcess] = field(default_factory=list)

    def start(self) -> None:
        ctx = mp.get_context("spawn")
        for o in self.options:
            p = ctx.Process(
                target=embedded_worker, args=(o,), name=f"kdsearch-worker-{o.worker_index}"
            )
            p.start()
            self.procs.append(p)

    def forward(self, sig: int) -> None:
        for p in self.procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, sig)

    def stop(self, timeout: float = 600.0) -> None:
        """SIGTERM each worker (finish the trial), then wait; SIGKILL what will not end."""
        for p in self.procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)
        for p in self.procs:
            p.join(timeout)
            if p.is_alive():
                p.kill()
                p.join(5)


def embedded_worker(options: WorkerOptions) -> int:
    """A worker under ``serve``: Ctrl-C reaches the whole process group, but only the
    server's SIGTERM should stop it (once: finish the trial), so SIGINT is ignored here.
    Its log lines (trials started and finished, outages) go to the server's stderr."""
    configure_logging()
    load_plugins()  # a fresh interpreter: the plug-ins register again here
    worker = Worker(options)
    install_signal_handlers(worker)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return worker.run()


def check_exposure(host: str, settings: Settings, has_keys: bool) -> None:
    if is_loopback(host) or has_keys or settings.open_mode:
        return
    raise ConfigError(
        f"refusing to serve on {host} with no API keys: create one with "
        "`kdsearch keys create`, bind to 127.0.0.1, or pass --open to allow anonymous access"
    )


def _server(app: object, host: str, port: int) -> object:
    """A uvicorn server that stops on SIGTERM/SIGINT without re-raising the signal.

    uvicorn re-raises a captured signal after its own shutdown, which would kill this
    process before it could stop its workers (and orphan them).
    """
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            old = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for s, handler in old.items():
                    signal.signal(s, handler)

    return Server(uvicorn.Config(app, host=host, port=port, log_level="info"))  # type: ignore[arg-type]


def visible_gpus() -> list[str]:
    """``cuda:0 ... cuda:K-1`` for the visible CUDA devices (no CUDA context is created)."""
    try:
        import torch

        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    except Exception:  # a broken driver: CPU workers
        return []


def worker_options(
    workers: int,
    settings: Settings,
    base_index: int | None = None,
    devices: list[str] | None = None,
) -> list[WorkerOptions]:
    """One option set per embedded worker.

    Sampler seeds: ``base_index + i``; the base is random unless given, so two servers
    (or a restarted one) on the same database do not propose the same trials again.
    Devices: round-robin over ``devices`` (default: the visible GPUs), used where a
    study's ``training.device`` is ``auto``: one worker per GPU.
    """
    base = base_index if base_index is not None else secrets.randbelow(10**6)
    devices = visible_gpus() if devices is None else devices
    threads = default_threads(workers) if workers else None
    return [
        WorkerOptions(
            settings.database_url,
            settings.artifact_dir,
            worker_index=base + i,
            torch_threads=threads,
            auto_device=devices[i % len(devices)] if devices else None,
        )
        for i in range(workers)
    ]


def serve(
    host: str,
    port: int,
    workers: int,
    settings: Settings,
    base_index: int | None = None,
    devices: list[str] | None = None,
) -> int:
    from .app import create_app

    app = create_app(settings)  # applies migrations: the schema is checked at start-up
    check_exposure(host, settings, any_active_key(app.state.kdsearch.engine))
    pool = WorkerPool(worker_options(workers, settings, base_index, devices))
    server: Any = _server(app, host, port)
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        # Active outside uvicorn's own handling: before it takes the signals (start-up:
        # stop the server) and after it gives them back (workers finishing: a second
        # signal is passed on to them, which abandons their trials).
        if stopping:
            pool.forward(signal.SIGTERM)
        else:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    pool.start()
    try:
        server.run()
    finally:
        stopping = True
        pool.stop()
    return 0
