"""The HTTP walk on PostgreSQL: `kdsearch serve` with an embedded worker, POST to checkpoint."""

from __future__ import annotations

import hashlib
import io
import signal
import tarfile
from pathlib import Path

import httpx
import pytest

from kdsearch.service.keys import create_key

from .proc_helpers import free_port, popen_cli, serve_args, wait_for, wait_until_ok
from .search_helpers import pg_available, pg_database, ready_engine, tiny_spec

pytestmark = pytest.mark.skipif(not pg_available(), reason="PostgreSQL on 127.0.0.1:5432 is down")


def test_walk_on_postgres_with_embedded_worker(tiny_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pg_database() as url:
        key = create_key(ready_engine(url), "alice")
        other = create_key(ready_engine(url), "mallory")
        port = free_port()
        base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {key}"}
        server = popen_cli(*serve_args(url, tmp_path / "art", port, "--workers", "1"))
        try:
            wait_until_ok(f"{base}/readyz", 120, "the server", interval=0.5)
            spec = tiny_spec(n_trials=2).model_dump(mode="json")
            assert httpx.post(f"{base}/v1/studies", json=spec).status_code == 401
            created = httpx.post(f"{base}/v1/studies", json=spec, headers=auth)
            assert created.status_code == 201, created.text
            sid = created.json()["id"]
            foreign = httpx.get(
                f"{base}/v1/studies/{sid}", headers={"Authorization": f"Bearer {other}"}
            )
            assert foreign.status_code == 403

            def status() -> str:
                return str(httpx.get(f"{base}/v1/studies/{sid}", headers=auth).json()["status"])

            wait_for(
                lambda: status() == "completed",
                900,
                "the study to complete",
                interval=0.5,
                ignore=(httpx.HTTPError,),
            )
            study = httpx.get(f"{base}/v1/studies/{sid}", headers=auth).json()
            assert study["trials"]["COMPLETE"] == 2 and study["recommended"] is not None
            board = httpx.get(
                f"{base}/v1/studies/{sid}/trials?sort=accuracy&order=desc", headers=auth
            ).json()
            accs = [r["metrics"]["accuracy"] for r in board["items"]]
            assert len(accs) == 2 and accs == sorted(accs, reverse=True)
            ck = httpx.get(f"{base}/v1/studies/{sid}/checkpoint", headers=auth)
            assert ck.status_code == 200
            assert hashlib.sha256(ck.content).hexdigest() == ck.headers["x-checksum-sha256"]
        finally:
            server.send_signal(signal.SIGTERM)
            server.communicate(timeout=300)
        with tarfile.open(fileobj=io.BytesIO(ck.content), mode="r:gz") as tar:
            tar.extractall(tmp_path / "dl", filter="data")
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "dl" / "checkpoint")
        assert model.config.id2label == {0: "rotten", 1: "fresh"}
