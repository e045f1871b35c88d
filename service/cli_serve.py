"""``kdsearch serve``."""

from __future__ import annotations

import argparse
import re
from typing import Any

from .cli_search import _check_url, default_artifact_dir, default_database_url


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the REST API and N embedded workers")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="embedded worker processes (0: none)")
    p.add_argument("--database-url", default=None, help="default: $KDSEARCH_DATABASE_URL")
    p.add_argument("--artifact-dir", default=None, help="default: $KDSEARCH_ARTIFACT_DIR")
    p.add_argument("--open", action="store_true", help="allow requests without an API key")
    p.add_argument(
        "--worker-index",
        type=int,
        default=None,
        help="first worker's sampler-seed offset (default: random; fix it to reproduce a run)",
    )
    p.add_argument(
        "--devices",
        default=None,
        help="comma-separated devices for studies on device 'auto', round-robin over the "
        "workers, e.g. cuda:0,cuda:1 (default: every visible GPU, else the CPU)",
    )
    p.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from kdsearch.distill.errors import ConfigError

    from .serve import serve
    from .settings import Settings

    url = args.database_url or default_database_url()
    _check_url(url)
    if args.workers < 0:
        raise ConfigError("--workers must be 0 or more")
    overrides: dict[str, Any] = {
        "database_url": url,
        "artifact_dir": args.artifact_dir or default_artifact_dir(),
    }
    if args.open:
        overrides["open_mode"] = True
    settings = Settings(**overrides)
    devices = None
    if args.devices is not None:
        devices = [d.strip() for d in args.devices.split(",") if d.strip()]
        bad = [d for d in devices if d != "cpu" and not re.fullmatch(r"cuda(:\d+)?", d)]
        if bad:
            raise ConfigError(f"--devices: {bad[0]!r} is not a device: use cpu, cuda or cuda:N")
    return serve(args.host, args.port, args.workers, settings, args.worker_index, devices)
