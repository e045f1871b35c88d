"""``kdsearch serve``: exposure check, embedded workers, and a restart mid-study."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx
import pytest

from kdsearch.distill.errors import ConfigError
from kdsearch.search.worker import Worker, WorkerOptions
from kdsearch.service.serve import check_exposure, is_loopback, worker_options
from kdsearch.service.settings import Settings

from .proc_helpers import free_port, popen_cli, run_cli, serve_args, wait_for, wait_until_ok
from .search_helpers import tiny_spec

HTTP_ERRORS = (httpx.HTTPError,)  # the server is not listening yet, or restarting


def test_exposure_rules() -> None:
    s = Settings()
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    check_exposure("127.0.0.1", s, has_keys=False)
    check_exposure("0.0.0.0", s, has_keys=True)
    check_exposure("0.0.0.0", Settings(open_mode=True), has_keys=False)
    with pytest.raises(ConfigError, match="refusing to serve on 0.0.0.0 with no API keys"):
        check_exposure("0.0.0.0", s, has_keys=False)


def test_refuses_public_bind_without_keys(tmp_path: Path) -> None:
    proc = run_cli(
        "serve", "--host", "0.0.0.0", "--port", str(free_port()), "--workers", "0",
        "--database-url", f"sqlite:///{tmp_path / 'kd.db'}", timeout=120,
    )  # fmt: skip
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
    proc = run_cli(
        "serve", "--workers", "1", "--devices", "gpu0",
        "--database-url", f"sqlite:///{tmp_path / 'kd.db'}", timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--devices: 'gpu0' is not a device: use cpu, cuda or cuda:N" in proc.stderr


def test_restart_mid_study_resumes_it(tiny_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, art, port = f"sqlite:///{tmp_path / 'kd.db'}", tmp_path / "art", free_port()
    base = f"http://127.0.0.1:{port}"
    server = popen_cli(*serve_args(url, art, port, "--workers", "1", "--open"))
    wait_until_ok(f"{base}/healthz", 120, "the server", interval=0.5)
    spec = tiny_spec(
        n_trials=3, search_space={"epochs": 1, "lr": 1e-4, "temperature": {"low": 1, "high": 4}}
    )
    created = httpx.post(f"{base}/v1/studies", json=spec.model_dump(mode="json"))
    assert created.status_code == 201, created.text
    sid = created.json()["id"]

    def complete() -> int:
        body = httpx.get(f"{base}/v1/studies/{sid}").json()
        return int(body["trials"].get("COMPLETE", 0))

    wait_for(lambda: complete() >= 1, 600, "a first trial", interval=0.5, ignore=HTTP_ERRORS)
    server.send_signal(signal.SIGTERM)  # graceful: the worker finishes its trial
    out = server.communicate(timeout=300)[0]
    assert server.returncode == 0, out
    # the embedded worker's own log lines reach the server's output
    assert re.search(r"kdsearch\.worker worker \d+ ready: looking for studies", out), out
    assert f"kdsearch.worker study {sid} trial 0: COMPLETE" in out, out
    before = httpx.Client  # the server is gone: nothing answers now
    with pytest.raises(httpx.ConnectError):
        before().get(f"{base}/healthz")

    server = popen_cli(*serve_args(url, art, port, "--workers", "1", "--open"))
    try:
        wait_for(
            lambda: httpx.get(f"{base}/v1/studies/{sid}").json()["status"] == "completed",
            900,
            "the study to complete after the restart",
            interval=0.5,
            ignore=HTTP_ERRORS,
        )
        body = httpx.get(f"{base}/v1/studies/{sid}").json()
        assert body["trials"]["COMPLETE"] == 3
        assert body["trials"].get("FAIL", 0) == 0 and body["trials"].get("RUNNING", 0) == 0
        ckpt = httpx.get(f"{base}/v1/studies/{sid}/checkpoint")
        assert ckpt.status_code == 200 and len(ckpt.content) > 1_000_000
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=300)
