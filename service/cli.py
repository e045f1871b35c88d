"""The ``kdsearch`` command line. Errors print one line, without a traceback."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from kdsearch.distill.errors import KDSearchError
from kdsearch.distill.plugins import load_plugins

from . import (
    cli_db,
    cli_distill,
    cli_keys,
    cli_predict,
    cli_proxy,
    cli_report,
    cli_search,
    cli_serve,
)
from .logs import configure_logging


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kdsearch",
        description="Knowledge-distillation search guided by confidence preservation.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli_distill.register(sub)
    cli_predict.register(sub)
    cli_search.register(sub)
    cli_db.register(sub)
    cli_keys.register(sub)
    cli_serve.register(sub)
    cli_proxy.register(sub)
    cli_report.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _quiet_libraries()
    configure_logging()
    os.environ.setdefault("OPTUNA_VERBOSITY", "WARNING")
    parser = _build_parser()
    # ``predict CHECKPOINT --onnx "text" ...``: texts may follow the options (argparse
    # alone stops taking a ``*`` positional once an option came between)
    args, extra = parser.parse_known_args(argv)
    unknown = [x for x in extra if x.startswith("-")]
    if extra and (unknown or not getattr(args, "trailing_texts", False)):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if extra:
        args.texts = [*args.texts, *extra]
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        load_plugins()  # $KDSEARCH_PLUGINS: metrics, losses, families, methods of the user's
        return handler(args)
    except KDSearchError as exc:
        print(f"kdsearch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kdsearch: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from kdsearch.search.storage import database_unavailable, first_line

        if not database_unavailable(exc):
            raise
        print(
            f"kdsearch: error: the database is unreachable ({first_line(exc)}): start it, "
            "or check --database-url / KDSEARCH_DATABASE_URL",
            file=sys.stderr,
        )
        return 2


def _quiet_libraries() -> None:
    """Our own progress bars and messages only: silence transformers' load reports.

    Environment variables, not imports: a command that fails on its config stays fast.
    """
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def print_json(obj: object, path: Path | None = None) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True)
    if path is None:
        print(text)
    else:
        path.write_text(text)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
