"""``kdsearch storage-proxy``: Optuna's gRPC storage proxy in front of the database."""

from __future__ import annotations

import argparse
from typing import Any

from .cli_search import _check_url, default_database_url


def register(sub: Any) -> None:
    p = sub.add_parser(
        "storage-proxy",
        help="serve the database's Optuna storage over gRPC (workers: --storage grpc://...)",
    )
    p.add_argument("--database-url", default=None, help="default: $KDSEARCH_DATABASE_URL")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=13000, help="default 13000")
    p.add_argument("--threads", type=int, default=16, help="request threads (default 16)")
    p.add_argument("--pool-size", type=int, default=5, help="database connections kept (default 5)")
    p.add_argument("--heartbeat-interval", type=int, default=None, help="seconds (default 10)")
    p.add_argument("--grace-period", type=int, default=None, help="seconds (default 30)")
    p.set_defaults(handler=cmd_storage_proxy)


def cmd_storage_proxy(args: argparse.Namespace) -> int:
    from kdsearch.distill.errors import ConfigError
    from kdsearch.search.proxy import serve_proxy
    from kdsearch.search.storage import GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S

    url = args.database_url or default_database_url()
    _check_url(url)
    for name in ("port", "threads", "pool_size"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    serve_proxy(
        url,
        args.host,
        args.port,
        threads=args.threads,
        heartbeat_interval=args.heartbeat_interval or HEARTBEAT_INTERVAL_S,
        grace_period=args.grace_period or GRACE_PERIOD_S,
        pool_size=args.pool_size,
        max_overflow=args.pool_size,
    )
    return 0
