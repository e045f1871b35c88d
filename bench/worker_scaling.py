"""Worker scaling: trials per minute with 1 and 2 ``kdsearch worker`` processes on PostgreSQL.

Each configuration gets its own throwaway PostgreSQL database and a fresh study of short
trials (created with ``search.runner.create_study``, as ``kdsearch study create`` does):
builtin rotten_tomatoes capped to 320/96 snippets, max_length 48, the builtin MiniLM teacher
fine-tuned once (3 epochs, cached under ``$KDSEARCH_HOME`` before any worker starts), a
2-layer truncated student, half an epoch per trial, TPE, no pruning (every trial does the same
work). Then N ``kdsearch worker --exit-when-idle`` processes are started together and timed
until the last one exits, while a thread counts the database's connections
(``pg_stat_activity``) every 0.5 s.

Configurations (``--configs``, ``WORKERSxTHREADS``, threads 0 = the worker's default):

- ``1x0``: one worker; with no ``--threads`` it leaves torch at its default, one thread per
  core (``torch.get_num_threads()``), so it uses every core alone;
- ``1x1``: one worker with ``--threads 1`` (the one-worker reference for ``2x1``);
- ``2x0``: two workers, each with torch's default: on a machine with fewer cores than
  workers x threads they oversubscribe the CPU (what two bare ``kdsearch worker`` give);
- ``2x1``: two workers with ``--threads 1``: one thread each, cores shared out.

Reported: trials per minute over the wall clock (launch to exit, start-up included) and over
the busy window (first trial start to last trial end), the ratio to the one-worker run with
the same threads per worker, the mean trial duration, and peak / mean DB connections.

    .venv/bin/python bench/worker_scaling.py --write bench/RESULTS.md
    .venv/bin/python bench/worker_scaling.py --quick      # 4 trials per configuration
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.*, this checkout first
from bench._env import bench_env

bench_env(  # the workers inherit them: quiet logs, no progress bars
    "TOKENIZERS_PARALLELISM",
    "MPLBACKEND",
    "OPTUNA_VERBOSITY",
    "TRANSFORMERS_VERBOSITY",
    "HF_HUB_DISABLE_PROGRESS_BARS",
)
import optuna  # noqa: E402
import torch  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from bench._pg import (  # noqa: E402
    PG_ADMIN,
    ConnectionSampler,
    kdsearch_cmd,
    postmaster_started,
    stop_process,
    throwaway_database,
)
from bench._report import add_output_args, header, machine, publish, versions  # noqa: E402
from bench._trials import TINY  # noqa: E402
from kdsearch.search import tables  # noqa: E402
from kdsearch.search.runner import create_study  # noqa: E402
from kdsearch.search.spec import StudySpec  # noqa: E402
from kdsearch.search.storage import make_engine, make_storage  # noqa: E402

SECTION = "## Worker scaling"


def make_spec(args: argparse.Namespace) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": "worker-scaling",
            **TINY,  # rotten_tomatoes 320/96 snippets, max_length 48; 2-layer student
            "search_space": {
                "temperature": {"low": 1.0, "high": 4.0},
                "alpha": {"low": 0.0, "high": 1.0},
                "lr": {"low": 5e-5, "high": 3e-4, "log": True},
                "epochs": args.epochs,
                "batch_size": 32,
            },
            "pruner": {"name": "none"},
            "n_trials": args.trials,
            "seed": 0,
        }
    )


def prepare(spec: StudySpec) -> float:
    """Fine-tune the teacher and cache its logits now, so no worker pays for it."""
    from kdsearch.distill.context import prepare_context
    from kdsearch.search.objective import build_run_config

    started = time.perf_counter()
    prepare_context(build_run_config(spec, {}))
    return time.perf_counter() - started


def start_proxy(stack: contextlib.ExitStack, url: str, log: Path) -> str:
    """``kdsearch storage-proxy`` on a free loopback port until ``stack`` closes."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    out = stack.enter_context(log.open("w"))
    cmd = [*kdsearch_cmd(), "storage-proxy", "--database-url", url, "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)

    stack.callback(stop_process, proc, signal.SIGINT)
    return f"grpc://127.0.0.1:{port}"


def run_config(
    args: argparse.Namespace, spec: StudySpec, workers: int, threads: int, via: str = "direct"
) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        url, pg_version = stack.enter_context(throwaway_database(args.pg_admin))
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="kd-bench-"))
        name = create_study(spec, url)
        sampler = ConnectionSampler(args.pg_admin, url.rsplit("/", 1)[1]).start()
        stack.callback(sampler.stop)
        cmd = [*kdsearch_cmd(), "worker", "--database-url", url, "--artifact-dir", f"{tmp}/art"]
        cmd += ["--exit-when-idle"] + (["--threads", str(threads)] if threads else [])
        if via == "proxy":  # the workers wait for it to answer (--wait-for-db)
            cmd += ["--storage", start_proxy(stack, url, Path(tmp) / "proxy.log")]
        logs = [Path(tmp) / f"worker{i}.log" for i in range(workers)]
        outs = [stack.enter_context(log.open("w")) for log in logs]
        pg_started = postmaster_started(args.pg_admin)
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        procs = [
            subprocess.Popen([*cmd, "--worker-index", str(i)], stdout=out, stderr=subprocess.STDOUT)
            for i, out in enumerate(outs)
        ]
        try:
            codes = [p.wait(args.timeout) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait(10)
        wall = time.perf_counter() - started
        sampler.stop()
        restarted = postmaster_started(args.pg_admin) != pg_started
        if any(codes):
            tails = "\n".join(log.read_text()[-2000:] for log in logs)
            raise SystemExit(f"a worker failed (exit codes {codes}):\n{tails}")
        done = [log.read_text().strip().splitlines()[-1] for log in logs]  # worker done: N trials
        engine = make_engine(url)
        study = optuna.load_study(study_name=name, storage=make_storage(url, engine))
        trials = study.get_trials(deepcopy=False)
        run = tables.get(engine, name)
        engine.dispose()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    first = min(t.datetime_start for t in trials if t.datetime_start is not None)
    last = max(t.datetime_complete for t in trials if t.datetime_complete is not None)
    busy = (last - first).total_seconds()
    conns = sampler.summary()
    return {
        "workers": workers,
        "threads": threads,
        "via": via,
        "trials": len(trials),
        "complete": len(complete),
        "per_worker": [int(line.split()[2]) for line in done],
        "status": run.status if run else "?",
        "wall_s": wall,
        "busy_s": busy,
        "per_min_wall": 60 * len(complete) / wall,
        "per_min_busy": 60 * len(complete) / busy,
        "trial_s": statistics.fmean(
            t.duration.total_seconds() for t in complete if t.duration is not None
        ),
        "conn_peak": conns["peak"],
        "conn_mean": conns["mean"],
        "conn_samples": conns["samples"],
        "conn_dropped": conns["dropped"],
        "pg_restarted": restarted,
        "states": {st.name: n for st in TrialState if (n := sum(t.state == st for t in trials))},
        "load": (load_before, os.getloadavg()[0]),
        "pg_version": pg_version,
    }


def section(args: argparse.Namespace, rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    default = info["default_threads"]
    ones = {(r["threads"], r["via"]): r for r in rows if r["workers"] == 1}
    first = next((r for r in rows if r["workers"] == 1), rows[0])
    where = machine(
        f" (torch's default: {default} threads per process)",
        f"PostgreSQL {info['pg_version']} on 127.0.0.1",
        *versions(torch, optuna),
        load=info["load"],
    )
    runtime = (
        f"{info['runtime_s'] / 60:.1f} min ({info['prepare_s']:.0f} s of it preparing the "
        "teacher and its logits)"
    )
    lines = [
        *header(SECTION, where, runtime),
        "",
        f"Per configuration: a fresh PostgreSQL database and study of {args.trials} trials "
        "(builtin rotten_tomatoes, 320 training / 96 validation snippets, max_length 48; "
        f"2-layer truncated student, {args.epochs:g} epoch(s) of batch 32 per trial; TPE, no "
        "pruning), then `kdsearch worker --exit-when-idle` x N started together; wall = launch "
        "to the last exit (start-up, teacher load from cache, study completion included); busy "
        "= first trial start to last trial end. Connections: `SELECT count(*) FROM "
        "pg_stat_activity WHERE datname = <db>` every 0.5 s while the workers run.",
        "",
        "| workers | via | torch threads per worker | trials (per worker) | wall s | "
        "trials/min (wall) | vs 1 worker | busy s | trials/min (busy) | vs 1 worker | mean "
        "trial s | DB connections peak | mean | load avg before, after |",
        "|" + " --- |" * 14,
    ]
    for r in rows:
        threads = r["threads"] or f"{default} (default)"
        base = ones.get((r["threads"], r["via"]), first)
        lines.append(
            f"| {r['workers']} | {r['via']} | {threads} | {r['complete']}/{r['trials']} "
            f"({' + '.join(map(str, r['per_worker']))}) | {r['wall_s']:.0f} | "
            f"{r['per_min_wall']:.2f} | {r['per_min_wall'] / base['per_min_wall']:.2f}x | "
            f"{r['busy_s']:.0f} | {r['per_min_busy']:.2f} | "
            f"{r['per_min_busy'] / base['per_min_busy']:.2f}x | {r['trial_s']:.1f} | "
            f"{r['conn_peak']} | {r['conn_mean']:.1f} | {r['load'][0]:.1f}, {r['load'][1]:.1f} |"
        )
    same = ", ".join(
        f"{r['workers']}x{r['threads']} {r['via']} against 1x{r['threads']}: "
        f"{r['per_min_wall'] / ones[(r['threads'], r['via'])]['per_min_wall']:.2f}x"
        for r in rows
        if r["workers"] > 1 and (r["threads"], r["via"]) in ones
    )
    lines += [
        "",
        "`vs 1 worker` = trials/min divided by the one-worker run's with the same threads per "
        f"worker (threads 0 = default) where there is one ({same or 'none'}), else by the "
        "first one-worker row's. Threads: `kdsearch worker` "
        "sets `torch.set_num_threads` only when given `--threads`; without it each worker "
        f"takes torch's default ({default} here, one per core), so two default workers run "
        f"{2 * default} compute threads on {os.cpu_count()} cores. (`kdsearch serve --workers "
        "N` and `kdsearch study run --workers N` divide the cores instead: "
        "`search.worker.default_threads`.) A direct worker holds two SQLAlchemy pools (kdsearch's "
        "engine and Optuna's RDBStorage, each `pool_size=2, max_overflow=3`), so at most 10 "
        "connections per worker. A proxied worker (`--storage grpc://...`) holds none: Optuna's "
        "calls go to `kdsearch storage-proxy` (one process, `pool_size` 5 + 5 overflow), and "
        "kdsearch's own tables get a connection per use. The machine's cores are shared with "
        "other jobs (`load avg` "
        "= the 1-minute load average when each configuration started and ended): the "
        "configurations run one after another, so a change in that load moves their ratios.",
        "",
    ]
    for r in rows:
        if r["pg_restarted"] or r["conn_dropped"] or set(r["states"]) != {"COMPLETE"}:
            lines[-1:-1] = [
                "",
                f"Disturbed: {r['workers']}x{r['threads']} {r['via']}: PostgreSQL "
                f"{'restarted' if r['pg_restarted'] else 'kept running'}, dropped the "
                f"sampler's connection {len(r['conn_dropped'])} time(s); trial states "
                f"{r['states']}.",
            ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--trials", type=int, default=8, help="trials per study (configuration)")
    p.add_argument("--epochs", type=float, default=0.5, help="training epochs per trial")
    p.add_argument(
        "--configs",
        nargs="+",
        default=["1x1", "2x1", "4x1", "8x1", "1x1p", "2x1p", "4x1p", "8x1p"],
        help="WORKERSxTHREADS, threads 0: the worker's default; a trailing p: the workers "
        "reach Optuna's tables through `kdsearch storage-proxy`",
    )
    p.add_argument("--timeout", type=float, default=1800, help="seconds per configuration")
    p.add_argument("--pg-admin", default=PG_ADMIN, help="PostgreSQL URL allowed to CREATE DATABASE")
    p.add_argument("--quick", action="store_true", help="4 trials of 0.5 epoch")
    add_output_args(p, "dump raw results here")
    args = p.parse_args(argv)
    if args.quick:
        args.trials = 4
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    spec = make_spec(args)
    default_threads = torch.get_num_threads()  # what a worker without --threads keeps
    prepare_s = prepare(spec)
    print(f"teacher and logits ready in {prepare_s:.1f} s", flush=True)
    rows = []
    for config in args.configs:
        via = "proxy" if config.endswith("p") else "direct"
        workers, threads = (int(x) for x in config.rstrip("p").split("x"))
        r = run_config(args, spec, workers, threads, via)
        print(
            f"{workers} worker(s) {via}, threads {threads or 'default'}: {r['complete']} trials in "
            f"{r['wall_s']:.0f} s ({r['per_min_wall']:.2f}/min wall, {r['per_min_busy']:.2f}/min"
            f" busy), connections peak {r['conn_peak']} mean {r['conn_mean']:.1f}",
            flush=True,
        )
        rows.append(r)
    info = {
        "pg_version": rows[0]["pg_version"],
        "default_threads": default_threads,
        "load": (load_start, os.getloadavg()[0]),
        "runtime_s": time.perf_counter() - started,
        "prepare_s": prepare_s,
    }
    body = section(args, rows, info)
    publish(SECTION, body, args.write, args.json, {"info": info, "rows": rows})


if __name__ == "__main__":
    main()
