"""``kdsearch serve``: exposure check, embedded workers, and a restart mid-study."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from distill.errors import ConfigError
from search.worker import Worker, WorkerOptions
from service.serve import check_exposure, is_loopback, worker_options
from service.settings import Settings

from .search_helpers import tiny_spec


def test_exposure_rules() -> None:
    s = Settings()
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    check_exposure("127.0.0.1", s, has_keys=False)
    check_exposure("0.0.0.0", s, has_keys=True)
    check_exposure("0.0.0.0", Settings(open_mode=True), has_keys=False)
    with pytest.raises(ConfigError, match="refusing to serve on 0.0.0.0 with no API keys"):
        check_exposure("0.0.0.0", s, has_keys=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(url: str, art: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service.cli",
            "serve",
            "--port",
            str(port),
            "--database-url",
            url,
            "--artifact-dir",
            str(art),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ},
    )


def _wait(pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_refuses_public_bind_without_keys(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            str(_free_port()),
            "--workers",
            "0",
            "--database-url",
            f"sqlite:///{tmp_path / 'kd.db'}",
        ],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "refusing to serve on 0.0.0.0 with no API keys" in proc.stderr


def test_embedded_workers_get_distinct_seeds_and_one_gpu_each(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'kd.db'}")
    opts = worker_options(3, settings, base_index=7, devices=["cuda:0", "cuda:1"])
    assert [o.worker_index for o in opts] == [7, 8, 9]
    assert [o.auto_device for o in opts] == ["cuda:0", "cuda:1", "cuda:0"]
    assert [o.auto_device for o in worker_options(2, settings, devices=[])] == [None, None]
    # A random base by default: two servers (or a restart) do not repeat sampler seeds.
    bases = {worker_options(1, settings, devices=[])[0].worker_index for _ in range(5)}
    assert len(bases) > 1
    # auto_device replaces only "auto"; an explicit --device replaces anything.
    worker = Worker(WorkerOptions(settings.database_url, str(tmp_path), auto_device="cuda:1"))
    assert worker._device("auto") == "cuda:1"
    assert worker._device("cpu") == "cpu"
    worker.options.device = "cuda:3"
    assert worker._device("cpu") == "cuda:3"


def test_serve_rejects_a_bad_device_list(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "serve",
            "--workers",
            "1",
            "--devices",
            "gpu0",
            "--database-url",
            f"sqlite:///{tmp_path / 'kd.db'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--devices: 'gpu0' is not a device: use cpu, cuda or cuda:N" in proc.stderr


def test_restart_mid_study_resumes_it(tiny_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, art, port = f"sqlite:///{tmp_path / 'kd.db'}", tmp_path / "art", _free_port()
    base = f"http://127.0.0.1:{port}"
    server = _serve(url, art, port, "--workers", "1", "--open")
    _wait(lambda: httpx.get(f"{base}/healthz").status_code == 200, 120, "the server")
    spec = tiny_spec(
        n_trials=3, search_space={"epochs": 1, "lr": 1e-4, "temperature": {"low": 1, "high": 4}}
    )
    created = httpx.post(f"{base}/v1/studies", json=spec.model_dump(mode="json"))
    assert created.status_code == 201, created.text
    sid = created.json()["id"]

    def complete() -> int:
        body = httpx.get(f"{base}/v1/studies/{sid}").json()
        return int(body["trials"].get("COMPLETE", 0))

    _wait(lambda: complete() >= 1, 600, "a first trial")
    server.send_signal(signal.SIGTERM)  # graceful: the worker finishes its trial
    out = server.communicate(timeout=300)[0]
    assert server.returncode == 0, out
    # the embedded worker's own log lines reach the server's output
    assert re.search(r"kdsearch\.worker worker \d+ ready: looking for studies", out), out
    assert f"kdsearch.worker study {sid} trial 0: COMPLETE" in out, out
    before = httpx.Client  # the server is gone: nothing answers now
    with pytest.raises(httpx.ConnectError):
        before().get(f"{base}/healthz")

    server = _serve(url, art, port, "--workers", "1", "--open")
    try:
        _wait(
            lambda: httpx.get(f"{base}/v1/studies/{sid}").json()["status"] == "completed",
            900,
            "the study to complete after the restart",
        )
        body = httpx.get(f"{base}/v1/studies/{sid}").json()
        assert body["trials"]["COMPLETE"] == 3
        assert body["trials"].get("FAIL", 0) == 0 and body["trials"].get("RUNNING", 0) == 0
        ckpt = httpx.get(f"{base}/v1/studies/{sid}/checkpoint")
        assert ckpt.status_code == 200 and len(ckpt.content) > 1_000_000
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=300)
