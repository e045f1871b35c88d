"""Process helpers for the tests: the kdsearch CLI as a real subprocess, waits, free ports.

``start_process`` writes a process's output to a log file (never a pipe, which a chatty
worker could fill and block on); a failed wait shows the tail of each watched process's log.
``popen_cli`` is the piped variant, for output read once with ``communicate()``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "kdsearch.service.cli", *args]


def run_cli(
    *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``kdsearch ARGS`` to the end; stdout and stderr captured."""
    return subprocess.run(
        cli(*args),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )


def popen_cli(*args: str) -> subprocess.Popen[str]:
    """Start ``kdsearch ARGS`` with stdout and stderr on one text pipe."""
    return subprocess.Popen(
        cli(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ},
    )


def worker_args(url: str, art: Path, *extra: str) -> list[str]:
    return ["worker", "--database-url", url, "--artifact-dir", str(art), "--threads", "1", *extra]


def serve_args(url: str, art: Path, port: int, *extra: str) -> list[str]:
    return [
        "serve",
        "--port",
        str(port),
        "--database-url",
        url,
        "--artifact-dir",
        str(art),
        *extra,
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    """A started process and its log file."""

    popen: subprocess.Popen[bytes]
    log: Path
    name: str

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, n: int = 4000) -> str:
        return f"--- {self.name} (pid {self.pid}, rc {self.popen.poll()}) ---\n{self.output()[-n:]}"

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit in {timeout}s\n{self.tail()}") from None

    def stop(self, timeout: float = 120) -> None:
        """SIGTERM, then SIGKILL: for clean-up, whatever state the test left it in."""
        if not self.alive():
            return
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(30)


def start_process(
    *args: str,
    log: Path,
    env: dict[str, str] | None = None,
    prefix: Sequence[str] = (),
    name: str | None = None,
) -> Proc:
    """Start ``kdsearch ARGS`` (behind ``prefix``, e.g. setpriv) with output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as fh:
        popen = subprocess.Popen(
            [*prefix, *cli(*args)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    return Proc(popen, log, name or f"kdsearch {args[0]}")


def wait_for(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    *,
    procs: Sequence[Proc] = (),
    interval: float = 1.0,
    ignore: tuple[type[BaseException], ...] = (),
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail when a watched process
    exits first or time runs out. Exceptions in ``ignore`` count as "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except ignore:
            value = None
        if value:
            return value
        dead = [p for p in procs if not p.alive()]
        if dead:
            logs = "\n".join(p.tail() for p in procs)
            raise AssertionError(f"{dead[0].name} exited while waiting for {what}\n{logs}")
        if time.monotonic() >= deadline:
            logs = "\n".join(p.tail() for p in procs)
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")
        time.sleep(interval)


def wait_until_ok(
    url: str, timeout: float, what: str, *, procs: Sequence[Proc] = (), interval: float = 1.0
) -> None:
    """Poll ``GET url`` until it answers 200; HTTP errors (nothing listening yet) count as
    "not yet"."""
    wait_for(
        lambda: httpx.get(url).status_code == 200,
        timeout,
        what,
        procs=procs,
        interval=interval,
        ignore=(httpx.HTTPError,),
    )
