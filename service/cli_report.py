"""``kdsearch report STUDY_ID --out DIR``: the confidence report as one HTML file."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from .cli_search import _check_url, _urls, add_storage_args

REPORT_FILE = "report.html"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="write a self-contained HTML confidence report of a study (DIR/report.html)",
    )
    p.add_argument("study_id", help="the study's id (its Optuna study name)")
    p.add_argument("--out", required=True, type=Path, help="folder to write report.html into")
    p.add_argument(
        "--kappa",
        type=float,
        default=None,
        help="threshold for conf_sigma (default: the spec's conf_sigma constraint, if any)",
    )
    add_storage_args(p)
    p.set_defaults(handler=cmd_report)


def _sqlite_file_missing(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :]
    if not path or path == ":memory:":
        return None
    return None if Path(path).expanduser().exists() else Path(path)


def cmd_report(args: argparse.Namespace) -> int:
    import optuna

    from kdsearch.distill.errors import ConfigError
    from kdsearch.search.artifacts import make_artifact_store
    from kdsearch.search.report import build_report
    from kdsearch.search.report_html import render_report
    from kdsearch.search.storage import make_engine, make_storage, prepare_schema

    url, artifacts = _urls(args)
    _check_url(url)
    if args.kappa is not None and not (math.isfinite(args.kappa) and args.kappa > 0):
        raise ConfigError(f"--kappa must be a positive number (got {args.kappa})")
    missing = _sqlite_file_missing(url)
    if missing is not None:
        raise ConfigError(f"--database-url: database file {missing} does not exist")
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {out} exists and is not a folder")
    engine = make_engine(url)
    prepare_schema(engine, upgrade=False)
    try:
        study = optuna.load_study(study_name=args.study_id, storage=make_storage(url, engine))
    except KeyError:
        raise ConfigError(
            f"no study named {args.study_id!r} in {url} (see `kdsearch study show`)"
        ) from None
    local = not artifacts.startswith("s3://")
    store = make_artifact_store(artifacts) if not local or Path(artifacts).is_dir() else None
    page = render_report(build_report(study, engine, store, kappa=args.kappa))
    try:
        out.mkdir(parents=True, exist_ok=True)
        target = out / REPORT_FILE
        target.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--out: cannot write {out / REPORT_FILE}: {exc.strerror}") from None
    print(target)
    return 0
