"""``kdsearch db upgrade`` and ``kdsearch db current``: kdsearch's own schema."""

from __future__ import annotations

import argparse
from typing import Any

from .cli_search import _check_url, default_database_url


def register(sub: Any) -> None:
    d = sub.add_parser("db", help="kdsearch's database schema (Alembic)")
    dsub = d.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    for name, helptext, handler in (
        ("upgrade", "apply migrations up to the latest", cmd_upgrade),
        ("current", "print the applied and the latest revision", cmd_current),
    ):
        p = dsub.add_parser(name, help=helptext)
        p.add_argument("--database-url", default=None, help="default: $KDSEARCH_DATABASE_URL")
        p.set_defaults(handler=handler)


def _engine(args: argparse.Namespace) -> Any:
    import sqlalchemy as sa

    from kdsearch.search.storage import engine_kwargs, normalize_url

    url = args.database_url or default_database_url()
    _check_url(url)
    url = normalize_url(url)
    return sa.create_engine(url, **engine_kwargs(url))


def cmd_upgrade(args: argparse.Namespace) -> int:
    from kdsearch import migrations
    from kdsearch.search.storage import make_storage

    engine = _engine(args)
    rev = migrations.upgrade(engine)
    make_storage(engine.url.render_as_string(hide_password=False), engine)  # Optuna's tables
    print(f"kdsearch schema at revision {rev}; Optuna's schema ready")
    return 0


def cmd_current(args: argparse.Namespace) -> int:
    from kdsearch import migrations

    engine = _engine(args)
    current, head = migrations.current_revision(engine), migrations.head_revision()
    state = "up to date" if current == head else "needs `kdsearch db upgrade`"
    print(f"current {current or 'none'}, latest {head}: {state}")
    return 0
