"""optuna-dashboard served by the API process, behind an admin key."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from kdsearch.search.runner import create_study
from kdsearch.service.keys import create_key
from kdsearch.service.settings import Settings

from .search_helpers import ready_engine, tiny_spec
from .test_api import _serve


def _basic(key: str) -> dict[str, str]:
    token = base64.b64encode(f"anyone:{key}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@contextmanager
def _server(tmp_path: Path, **settings: object) -> Iterator[tuple[str, str, str, str]]:
    url = f"sqlite:///{tmp_path / 'kd.db'}"
    engine = ready_engine(url)
    admin, user = create_key(engine, "ops", admin=True), create_key(engine, "alice")
    name = create_study(tiny_spec(n_trials=2), url)
    cfg = Settings(database_url=url, artifact_dir=str(tmp_path / "art"), **settings)
    yield from ((base, admin, user, name) for base in _serve(cfg))


def test_dashboard_page_and_api_behind_an_admin_key(tmp_path: Path) -> None:
    with _server(tmp_path) as (base, admin, user, name):
        anon = httpx.get(f"{base}/dashboard/")
        assert anon.status_code == 401
        assert anon.headers["www-authenticate"].startswith("Basic ")
        assert httpx.get(f"{base}/dashboard/", headers=_basic(user)).status_code == 403
        page = httpx.get(f"{base}/dashboard/", headers=_basic(admin))
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "<div id=" in page.text or "optuna" in page.text.lower()
        studies = httpx.get(f"{base}/api/studies", headers=_basic(admin))
        assert studies.status_code == 200
        listed = [s["study_name"] for s in studies.json()["study_summaries"]]
        assert listed == [name]
        bearer = httpx.get(f"{base}/api/studies", headers={"Authorization": f"Bearer {admin}"})
        assert bearer.status_code == 200
        # the API's own routes still win, and unknown API paths are a JSON 404
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        missing = httpx.get(f"{base}/v1/nothing-here")
        assert missing.status_code == 404 and "no such API route" in missing.json()["detail"]


def test_dashboard_open_in_open_mode(tmp_path: Path) -> None:
    with _server(tmp_path, open_mode=True) as (base, _admin, _user, name):
        studies = httpx.get(f"{base}/api/studies")
        assert studies.status_code == 200
        assert [s["study_name"] for s in studies.json()["study_summaries"]] == [name]
