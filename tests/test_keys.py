"""API keys: created once, stored hashed, verified in constant time, revocable."""

from __future__ import annotations

import hashlib
from pathlib import Path

import sqlalchemy as sa

from kdsearch.search.tables import api_keys
from kdsearch.service.keys import any_active_key, create_key, revoke_key, verify_key

from .proc_helpers import run_cli
from .search_helpers import ready_engine


def test_keys_are_stored_hashed_and_verified(tmp_path: Path) -> None:
    engine = ready_engine(f"sqlite:///{tmp_path / 'kd.db'}")
    assert not any_active_key(engine)
    key = create_key(engine, "alice")
    admin = create_key(engine, "ops", admin=True)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(api_keys)).all()
    assert all(key not in tuple(map(str, r)) for r in rows)  # never stored in clear
    assert rows[0].key_hash == hashlib.sha256(key.encode()).hexdigest()
    alice = verify_key(engine, key)
    assert alice is not None and alice.owner == "alice" and not alice.is_admin
    ops = verify_key(engine, admin)
    assert ops is not None and ops.is_admin
    forged = key[:-1] + ("A" if key[-1] != "A" else "B")  # right prefix, wrong secret
    for bad in (forged, "kds_nope", "Bearer " + key, "", key + "x"):
        assert verify_key(engine, bad) is None
    assert revoke_key(engine, key.split("_")[1])
    assert verify_key(engine, key) is None
    assert not revoke_key(engine, key.split("_")[1])  # already revoked
    assert any_active_key(engine)  # the admin key is still live


def test_keys_create_cli_prints_the_key_last(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kd.db'}"
    proc = run_cli("keys", "create", "--owner", "bob", "--database-url", url, timeout=120)
    proc.check_returncode()
    key = proc.stdout.strip().splitlines()[-1]
    principal = verify_key(ready_engine(url), key)
    assert principal is not None and principal.owner == "bob"
