"""The REST API on a real uvicorn server (in a thread), driven with httpx, on SQLite."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import optuna
import pytest
import uvicorn

from kdsearch.distill.metric_registry import computed_names
from kdsearch.search import tables
from kdsearch.search.storage import make_storage
from kdsearch.service.app import create_app
from kdsearch.service.keys import create_key
from kdsearch.service.settings import Settings

from .proc_helpers import free_port
from .search_helpers import ready_engine, tiny_spec


@dataclass
class Server:
    base: str
    database_url: str
    artifact_dir: Path
    root: Path
    keys: dict[str, str]

    def client(self, who: str | None = "alice") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[who]}"} if who else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=60)


def _serve(settings: Settings) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def alice_server(root: Path, **settings: Any) -> Iterator[Server]:
    """A server on a SQLite database under ``root`` (data and model roots there too) with
    one key, alice's; ``settings`` override the Settings fields."""
    url = f"sqlite:///{root / 'kd.db'}"
    config = Settings(
        database_url=url,
        artifact_dir=str(root / "artifacts"),
        data_roots=[root],
        model_roots=[root],
        **settings,
    )
    keys = {"alice": create_key(ready_engine(url), "alice")}
    for base in _serve(config):
        yield Server(base, url, root / "artifacts", root, keys)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("api")
    url = f"sqlite:///{root / 'kd.db'}"
    settings = Settings(
        database_url=url,
        artifact_dir=str(root / "artifacts"),
        max_trials=200,
        max_spec_bytes=65536,
        max_active_studies_per_key=5,
        data_roots=[root],
        model_roots=[root],
    )
    engine = ready_engine(url)
    keys = {
        "alice": create_key(engine, "alice"),
        "bob": create_key(engine, "bob"),
        "carol": create_key(engine, "carol"),
        "admin": create_key(engine, "root", admin=True),
    }
    for base in _serve(settings):
        yield Server(base, url, root / "artifacts", root, keys)


def _spec(**overrides: Any) -> dict[str, Any]:
    return tiny_spec(n_trials=2, **overrides).model_dump(mode="json")


def _post(server: Server, who: str = "alice", **overrides: Any) -> str:
    with server.client(who) as c:
        r = c.post("/v1/studies", json=_spec(**overrides))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_health_and_readiness(server: Server) -> None:
    with server.client(None) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        r = c.get("/readyz")
        assert r.status_code == 200 and r.json() == {"status": "ready"}
        assert c.get("/openapi.json").json()["info"]["title"] == "kdsearch"


def test_readyz_is_503_when_the_database_is_gone(server: Server) -> None:
    from fastapi.testclient import TestClient

    app = create_app(Settings(database_url=server.database_url, artifact_dir=str(server.root)))
    app.state.kdsearch.engine = ready_engine(f"sqlite:///{server.root / 'gone.db'}")
    app.state.kdsearch.engine.dispose()
    (server.root / "gone.db").unlink()
    (server.root / "gone.db").mkdir()  # a folder: SQLite cannot open it
    r = TestClient(app).get("/readyz")
    assert r.status_code == 503 and r.json()["detail"].startswith("database is unreachable")


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        (None, "missing API key: send 'Authorization: Bearer <key>'"),
        ("Bearer kds_00000000_nope", "invalid or revoked API key"),
        ("Bearer garbage", "invalid or revoked API key"),
        ("Basic YWxpY2U6eA==", "Authorization header must be 'Bearer <key>'"),
    ],
)
def test_missing_or_bad_keys_are_401(server: Server, header: str | None, detail: str) -> None:
    headers = {"Authorization": header} if header else {}
    with httpx.Client(base_url=server.base, headers=headers) as c:
        for method, path in [
            ("POST", "/v1/studies"),
            ("GET", "/v1/studies"),
            ("GET", "/v1/studies/kd-x"),
            ("GET", "/v1/studies/kd-x/checkpoint"),
            ("DELETE", "/v1/studies/kd-x"),
        ]:
            r = c.request(method, path, json=_spec() if method == "POST" else None)
            assert r.status_code == 401, (method, path, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json()["detail"].startswith(detail)


def test_another_owners_study_is_403_and_unlisted(server: Server) -> None:
    sid = _post(server, "alice")
    with server.client("bob") as bob:
        for method, path in [
            ("GET", f"/v1/studies/{sid}"),
            ("GET", f"/v1/studies/{sid}/trials"),
            ("GET", f"/v1/studies/{sid}/checkpoint"),
            ("POST", f"/v1/studies/{sid}/cancel"),
            ("DELETE", f"/v1/studies/{sid}"),
        ]:
            r = bob.request(method, path)
            assert r.status_code == 403, (method, path, r.text)
            assert r.json()["detail"] == f"study {sid!r} belongs to another owner"
        assert sid not in {s["id"] for s in bob.get("/v1/studies").json()["items"]}
    with server.client("admin") as admin:
        r = admin.get(f"/v1/studies/{sid}")
        assert r.status_code == 200 and r.json()["owner"] == "alice"
        assert sid in {s["id"] for s in admin.get("/v1/studies?limit=500").json()["items"]}
    with server.client("alice") as alice:
        r = alice.get("/v1/studies/kd-doesnotexist")
        assert r.status_code == 404 and "does not exist" in r.json()["detail"]
        assert alice.post(f"/v1/studies/{sid}/cancel").status_code == 200  # keep quota free


def _bad_bodies(root: Path) -> list[tuple[str, Any, int, str]]:
    """(case, JSON body or raw bytes, status, expected text in detail)."""
    spec = _spec()
    return [
        ("unknown field", {**spec, "bogus": 1}, 422, "bogus: unknown field"),
        (
            "temperature range reversed",
            {**spec, "search_space": {"temperature": {"low": 5, "high": 1}}},
            422,
            "search_space: search_space.temperature: low (5) is above high (1)",
        ),
        ("n_trials over limit", {**spec, "n_trials": 500}, 422, "n_trials: 500 is above this"),
        ("n_trials zero", {**spec, "n_trials": 0}, 422, "n_trials: Input should be greater"),
        ("n_trials wrong type", {**spec, "n_trials": "many"}, 422, "n_trials: Input should be"),
        (
            "unknown metric",
            {**spec, "objectives": [{"metric": "acc"}]},
            422,
            "objectives.0.metric: unknown metric 'acc'",
        ),
        (
            "duplicate objectives",
            {**spec, "objectives": [{"metric": "accuracy"}, {"metric": "accuracy"}]},
            422,
            "each metric may appear only once",
        ),
        ("no objectives", {**spec, "objectives": []}, 422, "objectives: List should have"),
        (
            "constraint without bound",
            {**spec, "constraints": [{"metric": "conf_sigma"}]},
            422,
            "needs 'max' or 'min'",
        ),
        ("unknown sampler", {**spec, "sampler": "bayes"}, 422, "sampler: must be one of"),
        (
            "unknown search parameter",
            {**spec, "search_space": {"dropout": 0.1}},
            422,
            "unknown parameter(s) dropout",
        ),
        (
            "unknown data scheme",
            {**spec, "data": {"source": "ftp://x"}},
            422,
            "data.source: unknown data source 'ftp://x'",
        ),
        (
            "csv outside the roots",
            {**spec, "data": {"source": "csv:/etc/passwd"}},
            422,
            "data.source: file '/etc/passwd' is outside the allowed data roots",
        ),
        (
            "jsonl escaping the root",
            {**spec, "data": {"source": f"jsonl:{root}/../elsewhere.jsonl"}},
            422,
            "data.source: file",
        ),
        (
            "hub dataset not allowed",
            {**spec, "data": {"source": "hub:imdb"}},
            422,
            "data.source: hub dataset 'imdb' is not allowed on this server",
        ),
        (
            "hub teacher not allowed",
            {**spec, "teacher": {"model": "bert-base-uncased"}},
            422,
            "teacher.model: hub model 'bert-base-uncased' is not allowed",
        ),
        (
            "teacher folder outside the roots",
            {**spec, "teacher": {"model": "/opt/models/teacher"}},
            422,
            "teacher.model: local folder '/opt/models/teacher' is outside the allowed model roots",
        ),
        (
            "unknown builtin teacher",
            {**spec, "teacher": {"model": "builtin:bert-huge"}},
            422,
            "teacher.model: unknown builtin model 'builtin:bert-huge': use builtin:minilm-l6",
        ),
        (
            "student folder outside the roots",
            {**spec, "student": {"kind": "pretrained", "path": "/srv/student"}},
            422,
            "student.path: local folder '/srv/student' is outside",
        ),
        (
            "pretrained student without path",
            {**spec, "student": {"kind": "pretrained"}},
            422,
            "student.path is required when student.kind is 'pretrained'",
        ),
        (
            "path with a NUL byte",
            {**spec, "teacher": {"model": "/models/\x00"}},
            422,
            "teacher.model: '/models/\\x00' is not a usable path",
        ),
        (
            "empty csv path",
            {**spec, "data": {"source": "csv:"}},
            422,
            "data.source: '' is not a usable path",
        ),
        ("malformed JSON", b'{"n_trials": 2,', 422, "body: not valid JSON"),
        ("empty body", b"", 422, "body: not valid JSON"),
        ("not an object", b"[1, 2]", 422, "body: must be a JSON object"),
        (
            "body too large",
            {**spec, "name": "x" * 70_000},
            413,
            "body: the spec is larger than this server's limit of 65536 bytes",
        ),
    ]


def test_bad_study_specs_are_4xx_with_a_specific_message(server: Server) -> None:
    cases = _bad_bodies(server.root)
    assert len(cases) >= 20
    with server.client("alice") as c:
        before = c.get("/v1/studies").json()["total"]
        for case, body, status, text in cases:
            if isinstance(body, bytes):
                r = c.post(
                    "/v1/studies", content=body, headers={"Content-Type": "application/json"}
                )
            else:
                r = c.post("/v1/studies", json=body)
            assert r.status_code == status, (case, r.text)
            assert text in r.json()["detail"], (case, r.json()["detail"])
        assert c.get("/v1/studies").json()["total"] == before  # nothing was created


def test_bad_queries_are_422_or_404(server: Server) -> None:
    sid = _post(server, "alice")
    with server.client("alice") as c:
        cases = [
            ("/v1/studies?limit=0", 422, "limit: Input should be greater than or equal to 1"),
            ("/v1/studies?offset=x", 422, "offset: Input should be a valid integer"),
            (f"/v1/studies/{sid}/trials?sort=bogus", 422, "sort: unknown sort key 'bogus'"),
            (
                f"/v1/studies/{sid}/trials?order=up",
                422,
                "query.order: must be one of 'asc' or 'desc'",
            ),
            (f"/v1/studies/{sid}/trials?state=DONE", 422, "state: unknown trial state(s) DONE"),
            (f"/v1/studies/{sid}/trials/x", 422, "number: Input should be a valid integer"),
            (f"/v1/studies/{sid}/trials/3", 404, "trial 3 does not exist"),
            (f"/v1/studies/{sid}/checkpoint?trial=-1", 422, "trial: Input should be greater"),
            (f"/v1/studies/{sid}/checkpoint", 409, "has no recommended trial yet"),
            (f"/v1/studies/{sid}/checkpoint?trial=0", 404, "trial 0 has no checkpoint"),
        ]
        for path, status, text in cases:
            r = c.get(path)
            assert r.status_code == status, (path, r.text)
            assert text in r.json()["detail"], (path, r.json()["detail"])
        r = c.get(f"/v1/studies/{sid}/trials?sort=bogus")
        assert "use one of accuracy, conf_sigma, number, duration_s" in r.json()["detail"]
        assert c.post(f"/v1/studies/{sid}/cancel").status_code == 200


def test_quota_of_active_studies_per_key(server: Server) -> None:
    ids = [_post(server, "carol") for _ in range(5)]
    with server.client("carol") as c:
        r = c.post("/v1/studies", json=_spec())
        assert r.status_code == 429
        assert "already has 5 queued or running studies (limit 5)" in r.json()["detail"]
        assert c.post(f"/v1/studies/{ids[0]}/cancel").status_code == 200
        assert c.post("/v1/studies", json=_spec()).status_code == 201


def test_cancel_and_delete(server: Server) -> None:
    sid = _post(server, "alice", name="to delete")
    with server.client("alice") as c:
        page = c.get("/v1/studies?limit=1").json()
        assert page["items"][0]["id"] == sid and page["items"][0]["name"] == "to delete"
        r = c.delete(f"/v1/studies/{sid}")
        assert r.status_code == 409 and "cancel it first" in r.json()["detail"]
        r = c.post(f"/v1/studies/{sid}/cancel")
        assert r.status_code == 200 and r.json() == {"id": sid, "status": "cancelled"}
        r = c.post(f"/v1/studies/{sid}/cancel")
        assert r.status_code == 409
        assert r.json()["detail"] == (
            "status: study is cancelled; only queued or running studies can be cancelled"
        )
        assert c.get(f"/v1/studies/{sid}").json()["status"] == "cancelled"
        assert c.delete(f"/v1/studies/{sid}").status_code == 204
        assert c.get(f"/v1/studies/{sid}").status_code == 404
        assert c.delete(f"/v1/studies/{sid}").status_code == 404
    names = {s.study_name for s in optuna.get_all_study_summaries(server.database_url)}
    assert sid not in names


def test_open_mode_accepts_requests_without_a_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kd.db'}"
    settings = Settings(database_url=url, artifact_dir=str(tmp_path / "a"), open_mode=True)
    for base in _serve(settings):
        with httpx.Client(base_url=base) as c:
            r = c.post("/v1/studies", json=_spec())
            assert r.status_code == 201, r.text
            sid = r.json()["id"]
            assert c.get(f"/v1/studies/{sid}").json()["owner"] == "anonymous"
            r = c.get("/v1/studies", headers={"Authorization": "Bearer kds_bad"})
            assert r.status_code == 401  # a wrong key is still wrong


@pytest.mark.slow
def test_the_whole_walk(server: Server, tiny_ctx) -> None:  # type: ignore[no-untyped-def]
    from kdsearch.search.runner import run_study

    spec = _spec(keep={"policy": "top_k", "k": 1}, confirm={"seeds": 1})
    with server.client("alice") as c:
        r = c.post("/v1/studies", json=spec)
        assert r.status_code == 201, r.text
        created = r.json()
        sid = created["id"]
        assert created["status"] == "queued"
        assert created["links"] == {
            "self": f"/v1/studies/{sid}",
            "trials": f"/v1/studies/{sid}/trials",
            "checkpoint": f"/v1/studies/{sid}/checkpoint",
        }
        queued = c.get(f"/v1/studies/{sid}").json()
        assert queued["status"] == "queued" and queued["recommended"] is None
        assert queued["trials"]["COMPLETE"] == 0 and queued["n_trials"] == 2

        run_study(tiny_spec(**spec), server.database_url, str(server.artifact_dir), study_name=sid)

        study = c.get(f"/v1/studies/{sid}").json()
        assert study["status"] == "completed" and study["error"] is None
        assert study["trials"]["COMPLETE"] == 2
        assert study["objectives"] == ["accuracy", "conf_sigma"]
        assert study["directions"] == ["maximize", "minimize"]
        best = study["recommended"]
        assert best is not None and 0.0 <= best["metrics"]["accuracy"] <= 1.0
        assert set(best["params"]) == {"temperature", "alpha", "lr"}
        front = {p["number"] for p in study["pareto_front"]}
        assert best["number"] in front or len(front) >= 1
        # the study's end: the pick scored on the held-out test rows, and re-run with seed 1
        assert set(best["test_metrics"]) == set(computed_names())
        assert best["confirmed"]["seeds"] == [1]
        assert best["chosen_by"] == "confirmed validation means"
        assert 0.0 <= best["confirmed"]["test_mean"]["accuracy"] <= 1.0
        assert set(best["confirmed"]["ci"]) == {"accuracy", "conf_sigma"}
        ends = study["end_jobs"]
        assert ends["done"] == ends["total"] >= 2 and ends["failed"] == 0

        board = c.get(f"/v1/studies/{sid}/trials?sort=accuracy&order=desc").json()
        assert board["total"] == 2
        rows = board["items"]
        accs = [row["metrics"]["accuracy"] for row in rows]
        assert accs == sorted(accs, reverse=True)
        assert {row["number"] for row in rows if row["pareto"]} == front
        for row in rows:
            assert row["state"] == "COMPLETE" and row["feasible"] is True
            assert row["duration_s"] > 0 and row["error"] is None
            assert row["values"] == [row["metrics"]["accuracy"], row["metrics"]["conf_sigma"]]
        asc = c.get(f"/v1/studies/{sid}/trials?sort=accuracy&order=asc&limit=1").json()
        assert asc["total"] == 2 and [r["number"] for r in asc["items"]] == [rows[-1]["number"]]
        mine = next(r for r in rows if r["number"] == best["number"])
        assert mine["test"] == best["test_metrics"] and mine["confirmed"] == best["confirmed"]
        by_test = c.get(f"/v1/studies/{sid}/trials?sort=test:accuracy").json()["items"]
        assert by_test[0]["test"] is not None
        assert c.get(f"/v1/studies/{sid}/trials?state=FAIL").json()["total"] == 0

        detail = c.get(f"/v1/studies/{sid}/trials/{best['number']}").json()
        assert set(detail["plots"]) == {"reliability", "confidence_scatter"}
        assert detail["checkpoint"] == f"/v1/studies/{sid}/checkpoint?trial={best['number']}"
        assert detail["config"]["distill"]["temperature"] == best["params"]["temperature"]
        png = c.get(detail["plots"]["reliability"])
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
        r = c.get(f"/v1/studies/{sid}/trials/{best['number']}/plots/nope.png")
        assert r.status_code == 404 and "confidence_scatter.png" in r.json()["detail"]

        ck = c.get(f"/v1/studies/{sid}/checkpoint")
        assert ck.status_code == 200, ck.text
        assert ck.headers["content-type"] == "application/gzip"
        assert f'filename="{sid}-trial{best["number"]}.tar.gz"' in ck.headers["content-disposition"]
        assert ck.headers["x-trial-number"] == str(best["number"])  # the confirmed pick
        assert hashlib.sha256(ck.content).hexdigest() == ck.headers["x-checksum-sha256"]
        other = 1 - best["number"]  # top_k=1: the other trial's checkpoint was deleted
        r = c.get(f"/v1/studies/{sid}/checkpoint?trial={other}")
        assert r.status_code == 404
        assert f"trials with one: {best['number']}" in r.json()["detail"]
        assert c.get(f"/v1/studies/{sid}/checkpoint?trial={best['number']}").content == ck.content

        r = c.post(f"/v1/studies/{sid}/cancel")
        assert r.status_code == 409 and "study is completed" in r.json()["detail"]

    out = server.root / "download"
    with tarfile.open(fileobj=io.BytesIO(ck.content), mode="r:gz") as tar:
        tar.extractall(out, filter="data")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(out / "checkpoint")
    tokenizer = AutoTokenizer.from_pretrained(out / "checkpoint")
    assert model.config.num_hidden_layers == 2
    logits = model(**tokenizer(["a warm, funny film"], return_tensors="pt")).logits
    assert tuple(logits.shape) == (1, 2)

    # delete: artifacts leave the store, the rows and the Optuna study go
    engine = ready_engine(server.database_url)
    stored = tables.list_artifacts(engine, sid, include_deleted=True)
    assert stored
    with server.client("alice") as c:
        assert c.delete(f"/v1/studies/{sid}").status_code == 204
        assert c.get(f"/v1/studies/{sid}").status_code == 404
    assert tables.list_artifacts(engine, sid, include_deleted=True) == []
    assert all(not (server.artifact_dir / a["artifact_id"]).exists() for a in stored)
    with pytest.raises(KeyError):
        optuna.load_study(study_name=sid, storage=make_storage(server.database_url, engine))
    assert json.loads(json.dumps(study))  # the study answer was plain JSON
