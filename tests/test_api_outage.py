"""A database outage answers 503 with a retry hint, never a bare 500."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from kdsearch.service.keys import create_key
from kdsearch.service.settings import Settings

from .faults._support import database_outage
from .search_helpers import pg_available, pg_database, ready_engine
from .test_api import _serve


@pytest.mark.skipif(not pg_available(), reason="PostgreSQL is not running")
def test_outage_is_a_503_then_service_resumes(tmp_path: Path) -> None:
    with pg_database() as url:
        key = create_key(ready_engine(url), "olga")
        settings = Settings(database_url=url, artifact_dir=str(tmp_path / "art"))
        auth = {"Authorization": f"Bearer {key}"}
        for base in _serve(settings):
            with httpx.Client(base_url=base, headers=auth, timeout=60) as c:
                assert c.get("/v1/studies").status_code == 200
                with database_outage(url):
                    for path in ("/v1/studies", "/v1/studies/kd-x", "/readyz"):
                        r = c.get(path)
                        assert r.status_code == 503, (path, r.text)
                    r = c.get("/v1/studies")
                    assert r.headers["retry-after"] == "5"
                    assert "database: busy or unreachable" in r.json()["detail"]
                assert c.get("/v1/studies").status_code == 200
