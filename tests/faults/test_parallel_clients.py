"""Fault: 20 clients at once, posting and polling studies while the worker runs trials.

A real ``kdsearch serve`` on PostgreSQL with one embedded worker; four owners with five
clients each, and a quota of three active studies per owner, so some posts must be refused
with the quota message. Nothing may answer 5xx, and after a graceful stop every created
study is listed and no trial is left RUNNING.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from kdsearch.search import tables
from kdsearch.search.storage import make_storage
from kdsearch.service.keys import create_key

from ..proc_helpers import free_port, serve_args, start_process, wait_until_ok
from ..search_helpers import ready_engine
from ._support import assert_no_crash, assert_none_running, fault_spec, serve_env, trials_of

pytestmark = pytest.mark.faults
CLIENTS, OWNERS, QUOTA = 20, 4, 3


def test_twenty_clients_post_and_poll_during_trials(
    fault_teacher: str, pg_url: str, tmp_path: Path
) -> None:
    engine = ready_engine(pg_url)
    keys = [create_key(engine, f"team{i}") for i in range(OWNERS)]
    admin = create_key(engine, "ops", admin=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_process(
        *serve_args(pg_url, tmp_path / "art", port, "--workers", "1"),
        log=tmp_path / "serve.log",
        env=serve_env(fault_teacher, max_active_studies_per_key=str(QUOTA)),
    )
    spec = fault_spec(
        fault_teacher,
        n_trials=1,
        search_space={"temperature": {"low": 1.0, "high": 4.0}, "epochs": 0.5},
    ).model_dump(mode="json")
    problems: list[str] = []
    posts: list[tuple[int, int, str]] = []  # (owner, status, id or detail)
    polls: Counter[int] = Counter()
    trial_seen = threading.Event()
    start = threading.Barrier(CLIENTS)
    lock = threading.Lock()

    def note(r: httpx.Response, ok: tuple[int, ...]) -> None:
        with lock:
            polls[r.status_code] += 1
            if r.status_code not in ok:
                problems.append(
                    f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}"
                )

    def client(i: int) -> None:
        owner = i % OWNERS
        headers = {"Authorization": f"Bearer {keys[owner]}"}
        with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
            start.wait()
            r = http.post("/v1/studies", json=spec)
            with lock:
                posts.append((owner, r.status_code, r.json().get("id") or r.json()["detail"]))
            if r.status_code == 429:
                note(http.get("/v1/studies"), (200,))
                return
            if r.status_code != 201:
                note(r, (201,))
                return
            sid = r.json()["id"]
            deadline, n = time.monotonic() + 300, 0
            while n < 10 or (not trial_seen.is_set() and time.monotonic() < deadline):
                body = http.get(f"/v1/studies/{sid}")
                note(body, (200,))
                note(http.get(f"/v1/studies/{sid}/trials"), (200,))
                if body.status_code == 200 and any(body.json()["trials"].values()):
                    trial_seen.set()  # the worker is in a trial while we poll
                n += 1
                time.sleep(0.5)
            note(http.post(f"/v1/studies/{sid}/cancel"), (200, 409))  # 409: it completed

    def guarded(i: int) -> None:
        try:
            client(i)
        except Exception as exc:  # a client that died must fail the test, not vanish
            with lock:
                problems.append(f"client {i}: {type(exc).__name__}: {exc}")

    try:
        wait_until_ok(f"{base}/readyz", 300, "the service", procs=[server])
        threads = [threading.Thread(target=guarded, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(400)
        assert not any(t.is_alive() for t in threads), "a client hung"
        assert server.alive(), server.tail()
        listed = httpx.get(
            f"{base}/v1/studies",
            params={"limit": 500},
            headers={"Authorization": f"Bearer {admin}"},
        ).json()
        server.signal(signal.SIGTERM)  # graceful: the worker finishes its trial
        assert server.wait(300) == 0, server.tail()
    finally:
        server.stop()
    assert not problems, problems[:5]
    assert len(posts) == CLIENTS
    assert {s for _, s, _ in posts} <= {201, 429}, posts
    created = [(o, sid) for o, s, sid in posts if s == 201]
    refused = [(o, detail) for o, s, detail in posts if s == 429]
    for owner, detail in refused:
        assert detail.startswith(f"owner 'team{owner}' already has ") and (
            f"queued or running studies (limit {QUOTA})" in detail
        ), detail
    per_owner = Counter(o for o, _ in created)
    assert len(per_owner) == OWNERS and max(per_owner.values()) <= QUOTA, per_owner
    assert refused, "five clients per owner and a quota of three: some posts must be refused"
    assert polls[200] >= 10 * len(created)
    assert trial_seen.is_set(), "no trial ran while the clients polled"
    # every created study is accounted for, and none is left half-run
    assert {sid for _, sid in created} == {item["id"] for item in listed["items"]}
    storage = make_storage(pg_url, engine)
    for _, sid in created:
        run = tables.get(engine, sid)
        assert run is not None and run.status in ("completed", "cancelled"), (sid, run)
        assert_none_running(trials_of(storage, sid))
    assert_no_crash(server)
