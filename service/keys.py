"""API keys: ``kds_<prefix>_<secret>``, stored as a SHA-256 hash looked up by prefix.

Keys are 190 bits of randomness, so a fast hash is enough (no password stretching);
comparison is constant-time. The plain key is returned once, at creation.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from kdsearch.search.tables import api_keys, connected, now

PREFIX_LEN = 8


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's owner, and whether it may see everyone's studies."""

    key_id: int
    owner: str
    is_admin: bool


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(engine: Engine, owner: str, *, admin: bool = False) -> str:
    if not owner or len(owner) > 255:
        raise ValueError("owner must be 1..255 characters")
    prefix = secrets.token_hex(PREFIX_LEN // 2)
    key = f"kds_{prefix}_{secrets.token_urlsafe(24)}"
    with engine.begin() as conn:
        conn.execute(
            api_keys.insert().values(
                prefix=prefix,
                key_hash=_hash(key),
                owner=owner,
                is_admin=admin,
                created_at=now(),
            )
        )
    return key


def verify_key(bind: Engine | sa.Connection, key: str) -> Principal | None:
    """The key's principal, or None when it is malformed, unknown or revoked."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "kds" or len(parts[1]) != PREFIX_LEN:
        return None
    with connected(bind) as conn:
        row = conn.execute(sa.select(api_keys).where(api_keys.c.prefix == parts[1])).first()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.key_hash, _hash(key)):
        return None
    return Principal(row.id, row.owner, bool(row.is_admin))


def list_keys(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(api_keys).order_by(api_keys.c.id)).all()
    return [
        {
            "prefix": r.prefix,
            "owner": r.owner,
            "admin": r.is_admin,
            "created_at": r.created_at,
            "revoked": r.revoked_at is not None,
        }
        for r in rows
    ]


def revoke_key(engine: Engine, prefix: str) -> bool:
    with engine.begin() as conn:
        res = conn.execute(
            api_keys.update()
            .where(api_keys.c.prefix == prefix, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now())
        )
    return bool(res.rowcount == 1)


def any_active_key(engine: Engine) -> bool:
    with engine.connect() as conn:
        n = conn.execute(
            sa.select(sa.func.count()).select_from(api_keys).where(api_keys.c.revoked_at.is_(None))
        ).scalar()
    return bool(n)
