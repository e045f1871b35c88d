"""``kdsearch keys create|list|revoke``."""

from __future__ import annotations

import argparse
from typing import Any

from .cli_db import _engine


def register(sub: Any) -> None:
    k = sub.add_parser("keys", help="API keys for the REST service")
    ksub = k.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    c = ksub.add_parser("create", help="create a key; the key is the last line printed")
    c.add_argument("--owner", default="default", help="who owns the studies made with it")
    c.add_argument("--admin", action="store_true", help="may see and manage every study")
    c.set_defaults(handler=cmd_create)
    ls = ksub.add_parser("list", help="list keys (prefixes only)")
    ls.set_defaults(handler=cmd_list)
    r = ksub.add_parser("revoke", help="revoke a key by its prefix")
    r.add_argument("prefix")
    r.set_defaults(handler=cmd_revoke)
    for p in (c, ls, r):
        p.add_argument("--database-url", default=None, help="default: $KDSEARCH_DATABASE_URL")


def _migrated(args: argparse.Namespace) -> Any:
    from kdsearch import migrations

    engine = _engine(args)
    migrations.upgrade(engine)
    return engine


def cmd_create(args: argparse.Namespace) -> int:
    from kdsearch.distill.errors import ConfigError

    from .keys import create_key

    try:
        key = create_key(_migrated(args), args.owner, admin=args.admin)
    except ValueError as exc:
        raise ConfigError(f"--owner: {exc}") from None
    kind = "admin key" if args.admin else "key"
    print(f"created {kind} for owner {args.owner!r}; it is shown only once:")
    print(key)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .keys import list_keys

    for k in list_keys(_migrated(args)):
        flags = ("admin " if k["admin"] else "") + ("revoked" if k["revoked"] else "active")
        print(f"{k['prefix']}  {k['owner']:<20} {flags}  created {k['created_at']}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from kdsearch.distill.errors import ConfigError

    from .keys import revoke_key

    if not revoke_key(_migrated(args), args.prefix):
        raise ConfigError(f"no active key with prefix {args.prefix!r} (see `kdsearch keys list`)")
    print(f"revoked {args.prefix}")
    return 0
