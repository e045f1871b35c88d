"""``kdsearch study ...`` and ``kdsearch worker``."""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path
from typing import Any

DEFAULT_DB = "sqlite:///./kdsearch.db"
DEFAULT_ARTIFACTS = "./kdsearch-artifacts"
_TEST_COLUMNS = ["accuracy", "conf_sigma"]
_COLUMNS = ("accuracy", "conf_sigma", "conf_bias", "ece_gap", "kl_teacher_student", "params")


def default_database_url() -> str:
    return os.environ.get("KDSEARCH_DATABASE_URL", DEFAULT_DB)


def default_artifact_dir() -> str:
    return os.environ.get("KDSEARCH_ARTIFACT_DIR", DEFAULT_ARTIFACTS)


def add_storage_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database-url",
        default=None,
        help=f"SQLAlchemy URL (default: $KDSEARCH_DATABASE_URL, else {DEFAULT_DB})",
    )
    p.add_argument(
        "--artifact-dir",
        default=None,
        help="artifact store folder or s3://bucket "
        f"(default: $KDSEARCH_ARTIFACT_DIR, else {DEFAULT_ARTIFACTS})",
    )


def register(sub: Any) -> None:
    s = sub.add_parser("study", help="create, run and inspect studies without the HTTP service")
    ssub = s.add_subparsers(dest="study_command", required=True, metavar="ACTION")
    r = ssub.add_parser("run", help="run a whole study locally and print its leaderboard")
    r.add_argument("--spec", required=True, type=Path, help="YAML or JSON study spec")
    r.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    add_storage_args(r)
    r.set_defaults(handler=cmd_study_run)
    c = ssub.add_parser("create", help="queue a study for `kdsearch worker` processes")
    c.add_argument("--spec", required=True, type=Path)
    add_storage_args(c)
    c.set_defaults(handler=cmd_study_create)
    show = ssub.add_parser("show", help="status and leaderboard of a study")
    show.add_argument("name")
    show.add_argument("--sort", default=None, help="metric to sort by (default: trial number)")
    add_storage_args(show)
    show.set_defaults(handler=cmd_study_show)

    w = sub.add_parser("worker", help="run trials of queued studies until stopped")
    add_storage_args(w)
    w.add_argument(
        "--storage",
        default=None,
        metavar="grpc://HOST:PORT",
        help="reach Optuna's tables through `kdsearch storage-proxy` (kdsearch's own tables "
        "still through --database-url, without a pool)",
    )
    w.add_argument("--device", default=None, help="override the device, e.g. cuda:1")
    w.add_argument("--max-trials", type=int, default=None, help="exit after this many trials")
    w.add_argument("--exit-when-idle", action="store_true", help="exit when no study is active")
    w.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    w.add_argument(
        "--worker-index",
        type=int,
        default=None,
        help="offsets this worker's sampler seed (default: random, so workers differ)",
    )
    w.add_argument("--heartbeat-interval", type=int, default=None, help="seconds (default 10)")
    w.add_argument("--grace-period", type=int, default=None, help="seconds (default 30)")
    w.add_argument(
        "--wait-for-db",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="at start-up, wait this long for an unreachable database (default 300)",
    )
    w.set_defaults(handler=cmd_worker)


def _urls(args: argparse.Namespace) -> tuple[str, str]:
    return args.database_url or default_database_url(), args.artifact_dir or default_artifact_dir()


def _load_spec(path: Path) -> Any:
    from kdsearch.distill.configfile import load_model
    from kdsearch.search.spec import StudySpec

    return load_model(StudySpec, path)


def _check_url(url: str) -> None:
    from kdsearch.distill.errors import ConfigError
    from kdsearch.search.storage import StorageError, normalize_url

    try:
        normalize_url(url)
    except StorageError as exc:
        raise ConfigError(f"--database-url: {exc}") from None


def print_leaderboard(url: str, name: str, sort: str | None = None) -> None:
    import optuna

    from kdsearch.distill.errors import ConfigError
    from kdsearch.distill.metric_registry import format_value
    from kdsearch.search import jobs, tables
    from kdsearch.search import study as study_mod
    from kdsearch.search.leaderboard import best_first, leaderboard, recommended_trial
    from kdsearch.search.storage import make_engine, make_storage, prepare_schema

    engine = make_engine(url)
    prepare_schema(engine, upgrade=False)
    try:
        study = optuna.load_study(study_name=name, storage=make_storage(url, engine))
    except KeyError:
        raise ConfigError(f"no study named {name!r} in {url}") from None
    info = study_mod.summary(engine, study)
    counts = ", ".join(f"{k.lower()} {v}" for k, v in info["trials"].items() if v)
    print(f"study {name}: {info['status']} ({counts or 'no trials'})")
    if info["error"]:
        print(f"  error: {info['error']}")
    run = tables.get(engine, name)
    final = run.results if run is not None else None
    ending = jobs.progress(engine, name)
    if ending["total"]:
        print(
            f"  end of study: {ending['done']}/{ending['total']} test/confirmation jobs done"
            + (f", {ending['failed']} failed" if ending["failed"] else "")
        )
    try:
        rows = leaderboard(study, sort=sort, descending=best_first(sort), final=final)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    columns = [*_COLUMNS, *(f"test:{c}" for c in _TEST_COLUMNS)]
    widths = [max(10, len(c)) for c in columns]
    header = f"{'#':>4} {'state':<9} {'pareto':<6} {'method':<10} " + " ".join(
        f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)
    )
    print(header)
    for row in rows:
        cells = []
        for c, w in zip(columns, widths, strict=True):
            where = row["metrics"] if not c.startswith("test:") else (row["test"] or {})
            v = where.get(c.removeprefix("test:"))
            cells.append(f"{format_value(c.removeprefix('test:'), v):>{w}}")
        flag = "*" if row["pareto"] else ""
        method = str(row.get("method") or "-")
        print(f"{row['number']:>4} {row['state']:<9} {flag:<6} {method:<10} " + " ".join(cells))
        if row.get("error"):
            print(f"       error: {str(row['error'])[:200]}")
    best = recommended_trial(study.get_trials(deepcopy=False), final)
    if best is not None:
        how = (final or {}).get("recommended_by", "validation")
        print(f"recommended: trial {best.number} (chosen on {how}) {best.params}")
        for line in describe_final(best.number, final):
            print(f"  {line}")


def describe_final(number: int, final: dict[str, Any] | None) -> list[str]:
    """The recommended trial's test numbers and confirmation, one line each."""
    if not final:
        return []
    lines = []
    key = str(number)
    test = final.get("test", {}).get(key)

    def fmt(metric: str, value: Any, std: Any = None, ci: dict[str, Any] | None = None) -> str:
        text = f"{metric} {value:.4f}" if isinstance(value, float | int) else f"{metric} -"
        if isinstance(std, float | int):
            text += f" ± {std:.4f}"
        if ci and metric in ci:
            text += f" [95% CI {ci[metric]['low']:.4f}, {ci[metric]['high']:.4f}]"
        return text

    metrics = ("accuracy", "conf_sigma")
    if test:
        ci = final.get("intervals", {}).get(key)
        lines.append(
            f"test, this run ({final.get('n_test_rows', '?')} held-out rows): "
            + ", ".join(fmt(m, test.get(m), ci=ci) for m in metrics)
        )
    confirmed = final.get("confirmed", {}).get(key)
    if confirmed:
        mean, std = confirmed.get("mean", {}), confirmed.get("std", {})
        line = f"confirmed over {len(confirmed['seeds'])} fresh seeds: validation " + ", ".join(
            fmt(m, mean.get(m), std.get(m)) for m in metrics
        )
        if confirmed.get("test_mean"):
            t_mean, t_std = confirmed["test_mean"], confirmed.get("test_std", {})
            line += "; test " + ", ".join(
                fmt(m, t_mean.get(m), t_std.get(m), confirmed.get("ci")) for m in metrics
            )
        lines.append(line)
    for err in final.get("errors", []):
        lines.append(f"{err['kind']} job of trial {err['trial']} failed: {err['error']}")
    return lines


def cmd_study_run(args: argparse.Namespace) -> int:
    from kdsearch.search.runner import run_study

    spec = _load_spec(args.spec)
    url, artifacts = _urls(args)
    _check_url(url)
    if args.workers < 1:
        from kdsearch.distill.errors import ConfigError

        raise ConfigError("--workers must be at least 1")

    def on_trial(study: str, trial: Any) -> None:
        acc = trial.user_attrs.get("metric:accuracy")
        sig = trial.user_attrs.get("metric:conf_sigma")
        extra = (
            f" accuracy={acc:.4f} conf_sigma={sig:.4f}"
            if acc is not None and sig is not None
            else ""
        )
        err = f" error={trial.user_attrs['error']}" if "error" in trial.user_attrs else ""
        print(f"trial {trial.number}: {trial.state.name}{extra}{err}", flush=True)

    name = run_study(spec, url, artifacts, workers=args.workers, on_trial=on_trial)
    print_leaderboard(url, name)
    return 0


def cmd_study_create(args: argparse.Namespace) -> int:
    from kdsearch.search.runner import create_study

    spec = _load_spec(args.spec)
    url, _ = _urls(args)
    _check_url(url)
    print(create_study(spec, url))
    return 0


def cmd_study_show(args: argparse.Namespace) -> int:
    url, _ = _urls(args)
    _check_url(url)
    print_leaderboard(url, args.name, args.sort)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from kdsearch.search.runner import worker_main
    from kdsearch.search.storage import GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S
    from kdsearch.search.worker import WorkerOptions

    url, artifacts = _urls(args)
    _check_url(url)
    if args.storage is not None:
        from kdsearch.distill.errors import ConfigError
        from kdsearch.search.storage import StorageError, parse_grpc_url

        try:
            parse_grpc_url(args.storage)
        except StorageError as exc:
            raise ConfigError(str(exc)) from None
    options = WorkerOptions(
        url,
        artifacts,
        # distinct sampler seeds across workers (containers all have pid 1); fix it with
        # --worker-index for a reproducible run
        worker_index=(
            args.worker_index if args.worker_index is not None else secrets.randbelow(10**6)
        ),
        exit_when_idle=args.exit_when_idle,
        torch_threads=args.threads,
        max_trials=args.max_trials,
        device=args.device,
        heartbeat_interval=args.heartbeat_interval or HEARTBEAT_INTERVAL_S,
        grace_period=args.grace_period or GRACE_PERIOD_S,
        startup_wait_s=max(0.0, args.wait_for_db),
        storage_url=args.storage,
    )
    n = worker_main(options)
    print(f"worker done: {n} trials")
    return 0
