"""API under load: kdsearch's leaderboard against optuna-dashboard's own API, same study.

A study of 1,000 finished trials in a throwaway PostgreSQL database. The study is created
through the REST API (``POST /v1/studies``, admin key from ``kdsearch keys create --admin``),
so its registry row, metric names and spec attribute are a real study's. Its trials are added
with ``study.add_trials`` / ``optuna.trial.create_trial`` and carry what
``search/objective.py`` stores: sampled params with their distributions, the two objective
values, every ``metric:<name>`` user attr, ``config``, ``student``, ``train_seconds``, the
intermediate vectors and the constraint; ~3% FAIL (``error``, ``traceback``), ~7% PRUNED.
No artifacts (``bench/_trials.py``).

The real service runs as a subprocess (``kdsearch serve --workers 0``, 127.0.0.1); the load
generator is this process (asyncio and a minimal keep-alive HTTP/1.1 client: httpx's asyncio
client spent more CPU per request than the server). Per concurrency level (1, 8, 32
clients), endpoints take turns; each gets up to N requests (no new one after
``--level-seconds``), reported as p50 / p99 latency and requests/s:

- ``/v1/studies/{id}/trials?limit=50``: a 50-row leaderboard page;
- ``/v1/studies/{id}/trials``: the leaderboard's default page (100 rows);
- ``/v1/studies/{id}/trials?sort=conf_sigma&order=asc``: sorted by a metric;
- ``/v1/studies/{id}/trials?limit=1000``: every trial on one page;
- ``/api/studies/{optuna id}?after=0``: optuna-dashboard's study detail (every trial),
  mounted by the same server behind the same admin key.

    .venv/bin/python bench/api_load.py --write bench/RESULTS.md
    .venv/bin/python bench/api_load.py --quick        # 300 trials, fewer requests
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.*, this checkout first
from bench._env import bench_env

bench_env("OPTUNA_VERBOSITY")  # the server inherits it
import httpx  # noqa: E402
import optuna  # noqa: E402
import optuna_dashboard  # noqa: E402

from bench._pg import (  # noqa: E402
    PG_ADMIN,
    create_admin_key,
    postmaster_started,
    running_server,
    throwaway_database,
)
from bench._report import add_output_args, header, machine, publish, versions  # noqa: E402
from bench._trials import SPEC, make_trials  # noqa: E402
from kdsearch.search import tables  # noqa: E402
from kdsearch.search.storage import make_engine, make_storage  # noqa: E402

SECTION = "## API under load"
PAGE_50 = "kdsearch leaderboard (50 rows)"
# issue 13's goals for the 50-row page at 32 clients
GOAL_RPS, GOAL_P99_MS, GOAL_VS_DASHBOARD, GOAL_CLIENTS = 200, 300, 100, 32


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --------------------------------------------------------------------------- the study


def build_study(base: str, key: str, url: str, n: int, seed: int) -> tuple[str, int]:
    """POST the spec, then add ``n`` finished trials; returns (study id, optuna study id)."""
    r = httpx.post(
        f"{base}/v1/studies", json={**SPEC, "n_trials": n}, headers=auth(key), timeout=120
    )
    r.raise_for_status()
    name: str = r.json()["id"]
    engine = make_engine(url)
    storage = make_storage(url, engine)
    study = optuna.load_study(study_name=name, storage=storage)
    trials = make_trials(n, seed)
    # A few writers at once (one transaction per trial): the study is built in half the time.
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(study.add_trials, [trials[i : i + 50] for i in range(0, n, 50)]))
    with engine.begin() as conn:  # what the workers leave behind once the budget is spent
        t = tables.study_runs
        conn.execute(t.update().where(t.c.study_name == name).values(claimed=n))
    tables.set_status(engine, name, "completed")
    sid = storage.get_study_id_from_name(name)
    engine.dispose()
    return name, sid


def endpoints(name: str, sid: int) -> dict[str, str]:
    trials = f"/v1/studies/{name}/trials"
    return {
        PAGE_50: f"{trials}?limit=50",
        "kdsearch leaderboard (default page, 100 rows)": trials,
        "kdsearch leaderboard sort=conf_sigma": f"{trials}?sort=conf_sigma&order=asc",
        "kdsearch leaderboard limit=1000": f"{trials}?limit=1000",
        "optuna-dashboard /api/studies/{id}": f"/api/studies/{sid}?after=0",
    }


def check(base: str, key: str, paths: dict[str, str], n: int) -> None:
    """Every endpoint answers 200 with the whole study before anything is timed."""
    for label, path in paths.items():
        r = httpx.get(base + path, headers=auth(key), timeout=600)
        if r.status_code != 200:
            raise SystemExit(f"{label}: HTTP {r.status_code}: {r.text[:300]}")
        body = r.json()
        got = body["total"] if "total" in body else len(body["trials"])
        if got != n:
            raise SystemExit(f"{label}: {got} trials in the answer, expected {n}")


# --------------------------------------------------------------------------- load


class Connection:
    """One keep-alive HTTP/1.1 connection with a minimal client: a request is bytes made
    once, a response is read by its ``Content-Length`` (or chunks). httpx's asyncio client
    costs more CPU per request than the server does (6 ms against 4), so on a small
    machine it, not the server, would set the ceiling."""

    def __init__(self, base: str, key: str) -> None:
        host, port = base.split("://", 1)[1].rsplit(":", 1)
        self.host, self.port, self.key = host, int(port), key
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def get(self, path: str) -> tuple[int, int]:
        """(status, body bytes) of ``GET path``."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Authorization: Bearer {self.key}\r\n\r\n".encode()
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)
        }
        if "content-length" in headers:
            size = int(headers["content-length"])
            await self.reader.readexactly(size)
        else:  # chunked
            size = 0
            while True:
                n = int((await self.reader.readline()).split(b";")[0], 16)
                await self.reader.readexactly(n + 2)
                size += n
                if n == 0:
                    break
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, size


async def one_level(
    base: str, key: str, path: str, concurrency: int, total: int, cap_s: float
) -> dict[str, Any]:
    """Up to ``total`` GETs of ``path`` from ``concurrency`` clients (a keep-alive connection
    each) sharing a counter; no new request starts after ``cap_s`` seconds (those in flight
    finish)."""
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    sizes: list[int] = []
    left = total
    started = time.perf_counter()

    async def user() -> None:
        nonlocal left
        conn = Connection(base, key)
        try:
            while left > 0 and time.perf_counter() - started < cap_s:
                left -= 1
                t0 = time.perf_counter()
                try:
                    status, size = await conn.get(path)
                    outcome = str(status)
                    if status == 200:
                        sizes.append(size)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    outcome = type(exc).__name__
                    await conn.close()
                latencies.append(time.perf_counter() - t0)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
        finally:
            await conn.close()

    await asyncio.gather(*(user() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    latencies.sort()
    ok = outcomes.get("200", 0)
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "wall_s": wall,
        "rps": ok / wall,
        "p50_ms": 1000 * percentile(latencies, 50),
        "p99_ms": 1000 * percentile(latencies, 99),
        "errors": len(latencies) - ok,
        "outcomes": outcomes,
        "bytes": int(statistics.median(sizes)) if sizes else 0,
    }


def percentile(sorted_xs: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return sorted_xs[max(0, min(len(sorted_xs) - 1, math.ceil(q / 100 * len(sorted_xs)) - 1))]


async def measure(args: argparse.Namespace, base: str, key: str, paths: dict[str, str]) -> Any:
    results = []
    for concurrency, total in zip(args.concurrency, args.requests, strict=True):
        for label, path in paths.items():
            async with httpx.AsyncClient(headers=auth(key), timeout=600) as c:
                for _ in range(args.warmup):
                    with contextlib.suppress(httpx.HTTPError):
                        await c.get(base + path)
            r = await one_level(base, key, path, concurrency, total, args.level_seconds)
            r["endpoint"] = label
            print(
                f"  {label:<48} c={concurrency:<3} p50 {r['p50_ms']:8.1f} ms  p99 "
                f"{r['p99_ms']:8.1f} ms  {r['rps']:6.2f} req/s  {r['outcomes']}",
                flush=True,
            )
            results.append(r)
    return results


# --------------------------------------------------------------------------- report


def section(args: argparse.Namespace, results: list[dict[str, Any]], info: dict[str, Any]) -> str:
    levels = zip(args.concurrency, args.requests, strict=True)
    pg = f"PostgreSQL {info['pg_version']} on 127.0.0.1"
    where = machine("", pg, *versions(optuna, optuna_dashboard, httpx), load=info["load"])
    runtime = f"{info['runtime_s'] / 60:.1f} min ({info['build_s']:.0f} s of it building the study)"
    lines = [
        *header(SECTION, where, runtime),
        "",
        f"One study of {args.trials} finished trials ({info['states']}) created with `POST "
        "/v1/studies`; trials added with `study.add_trials`, carrying what a real trial stores "
        "(params, values, every `metric:<name>`, config, student, intermediate vectors, "
        "constraint). Server: `kdsearch serve --workers 0` (one uvicorn process) on 127.0.0.1; "
        "load generator: this separate process (asyncio, a minimal HTTP/1.1 client, one "
        "keep-alive connection per client) on the same cores. Per level at most "
        f"{', '.join(f'{r} requests at {c}' for c, r in levels)} client(s), no new request "
        f"after {args.level_seconds:g} s (those in flight finish), after {args.warmup} "
        "unmeasured requests per endpoint; endpoints take turns within a level.",
        "",
        "| endpoint | clients | requests | p50 ms | p99 ms | requests/s | vs dashboard | "
        "errors | response KiB |",
        "|" + " --- |" * 9,
    ]
    dash = {r["concurrency"]: r["rps"] for r in results if r["endpoint"].startswith("optuna")}
    goal = next(
        (r for r in results if r["endpoint"] == PAGE_50 and r["concurrency"] == GOAL_CLIENTS), None
    )
    if goal is not None:
        vs = goal["rps"] / dash[GOAL_CLIENTS] if dash.get(GOAL_CLIENTS) else math.inf
        met = goal["rps"] >= GOAL_RPS and goal["p99_ms"] <= GOAL_P99_MS and vs >= GOAL_VS_DASHBOARD
        lines[-2:-2] = [
            f"**Goal ({'met' if met else 'missed'}):** the 50-row page at {GOAL_CLIENTS} clients: "
            f"{goal['rps']:.0f} requests/s (goal >= {GOAL_RPS}), p99 {goal['p99_ms']:.0f} ms "
            f"(goal <= {GOAL_P99_MS}), {vs:.0f}x optuna-dashboard's API on the same study "
            f"(goal >= {GOAL_VS_DASHBOARD}x).",
            "",
        ]
    for r in results:
        ratio = f"{r['rps'] / dash[r['concurrency']]:.2f}x" if dash[r["concurrency"]] else "-"
        lines.append(
            f"| {r['endpoint']} | {r['concurrency']} | {r['requests']} | {r['p50_ms']:.0f} | "
            f"{r['p99_ms']:.0f} | {r['rps']:.2f} | {ratio} | {r['errors']} | "
            f"{r['bytes'] / 1024:.0f} |"
        )
    lines += [
        "",
        "`vs dashboard` = requests/s answered 200 divided by optuna-dashboard's at the same "
        "number of clients (above 1.00x: kdsearch serves more); `response KiB` of a 200. "
        f"`errors`: {info['outcomes']}. The server logged {info['server_errors']} unhandled "
        "errors (HTTP 500)"
        + (
            f", {info['pool_timeouts']} of them SQLAlchemy `QueuePool limit of size 2 overflow 3 "
            "reached ... timeout 30.00`: "
            "requests waited over 30 s for one of the storage's 5 pooled connections; after "
            "each, uvicorn logs 'Exception in ASGI application' and closes the keep-alive "
            "connection, so the client's next request on it fails (httpx `ReadError`)"
            if info["pool_timeouts"]
            else ""
        )
        + ". The dashboard's answer holds "
        "every trial with all its attributes, the leaderboard's default page 100 rows; "
        "`limit=1000` is the like-for-like row count. optuna-dashboard keeps a study's trials "
        "in memory (10 s for 500+ trials, 2 s under 100) and re-reads them after that; "
        "kdsearch's service keeps one trial cache for its whole life (`search/read_cache.py`): "
        "finished trials never change, so a request reads only trials that are new or still "
        "running; and it keeps each study's rows, sorted views and rendered pages under a "
        "change marker of the trials' states (`service/page_cache.py`), so a request to an "
        "unchanged study sends stored bytes. Server pools: "
        "`KDSEARCH_DB_POOL_SIZE` 5 + `KDSEARCH_DB_MAX_OVERFLOW` 10 connections (defaults).",
        "",
    ]
    if info["pg_restarted"]:
        lines[-1:-1] = ["", "Disturbed: PostgreSQL restarted during the measurement."]
    return "\n".join(lines)


def error_summary(results: list[dict[str, Any]]) -> str:
    """All non-200 outcomes over the run, e.g. '96 HTTP 500, 51 ReadError'."""
    totals: dict[str, int] = {}
    for r in results:
        for k, n in r["outcomes"].items():
            totals[k] = totals.get(k, 0) + n
    parts = [f"{n} {'HTTP ' if k.isdigit() else ''}{k}" for k, n in totals.items() if k != "200"]
    return ", ".join(parts) or "none"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--trials", type=int, default=1000, help="finished trials in the study")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--requests", type=int, nargs="+", default=[100, 400, 3000])
    p.add_argument("--level-seconds", type=float, default=45, help="no new request after this")
    p.add_argument("--warmup", type=int, default=3, help="unmeasured requests per endpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pg-admin", default=PG_ADMIN, help="PostgreSQL URL allowed to CREATE DATABASE")
    p.add_argument("--server-log", type=Path, help="keep the server's log here")
    p.add_argument("--quick", action="store_true", help="300 trials, 10/20/40 requests, 20 s")
    add_output_args(p, "dump raw results here")
    args = p.parse_args(argv)
    if args.quick:
        args.trials, args.requests, args.level_seconds = 300, [10, 20, 40], 20
    if len(args.requests) != len(args.concurrency):
        p.error("--requests needs one count per --concurrency level")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kd-bench-")))
        log = args.server_log or tmp / "server.log"
        url, pg_version = stack.enter_context(throwaway_database(args.pg_admin))
        key = create_admin_key(url)
        env = {"KDSEARCH_MAX_TRIALS": str(max(args.trials, 200))}
        base = stack.enter_context(running_server(url, env, log))
        print(f"server up at {base}; building a study of {args.trials} trials", flush=True)
        name, sid = build_study(base, key, url, args.trials, args.seed)
        build_s = time.perf_counter() - started
        print(f"study {name} (optuna id {sid}) ready after {build_s:.1f} s", flush=True)
        paths = endpoints(name, sid)
        check(base, key, paths, args.trials)
        pg_started = postmaster_started(args.pg_admin)
        results = asyncio.run(measure(args, base, key, paths))
        restarted = postmaster_started(args.pg_admin) != pg_started
        counts = httpx.get(f"{base}/v1/studies/{name}", headers=auth(key), timeout=600).json()
        server_log = log.read_text()
    info = {
        "pg_version": pg_version,
        "load": (load_start, os.getloadavg()[0]),
        "runtime_s": time.perf_counter() - started,
        "build_s": build_s,
        "states": ", ".join(f"{n} {s}" for s, n in counts["trials"].items() if n),
        "server_errors": server_log.count("unhandled error on"),
        # each 500 is logged twice (the app's handler, then uvicorn), traceback included
        "pool_timeouts": server_log.count("TimeoutError: QueuePool limit") // 2,
        "outcomes": error_summary(results),
        "pg_restarted": restarted,
    }
    if restarted:
        print("warning: PostgreSQL restarted during the measurement", file=sys.stderr)
    body = section(args, results, info)
    publish(SECTION, body, args.write, args.json, {"info": info, "results": results})


if __name__ == "__main__":
    main()
