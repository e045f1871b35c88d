"""optuna-dashboard on the service's own storage, mounted as the fallback at ``/``.

Its front end calls absolute paths (``/dashboard``, ``/api/...``, ``/static/...``), so it
cannot live under a prefix: the API's routes match first and everything else reaches the
dashboard's WSGI app (through a2wsgi). The dashboard can delete any study, so it needs an
admin key: as HTTP Basic (any user name, the key as password, which a browser can send)
or as a Bearer token. In open mode it is open too.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from sqlalchemy.engine import Engine

from .keys import verify_key

Scope = dict[str, Any]
_CHALLENGE = [(b"www-authenticate", b'Basic realm="kdsearch dashboard", charset="UTF-8"')]


def key_from_header(value: str) -> str | None:
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(rest.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


class DashboardGate:
    """ASGI wrapper: admin key (or open mode) before the dashboard's WSGI app."""

    def __init__(self, app: Any, engine: Engine, open_mode: bool) -> None:
        self.app, self.engine, self.open_mode = app, engine, open_mode

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith("/v1/"):
            await _reply(send, 404, b'{"detail": "no such API route: see /docs"}', json=True)
            return
        if scope["type"] != "http" or self.open_mode:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        key = key_from_header(headers.get(b"authorization", b"").decode("latin-1"))
        principal = verify_key(self.engine, key) if key else None
        if principal is None:
            await _reply(send, 401, b"the dashboard needs an admin API key as the Basic password")
            return
        if not principal.is_admin:
            await _reply(send, 403, b"the dashboard shows every study: use an admin API key")
            return
        await self.app(scope, receive, send)


async def _reply(send: Any, status: int, text: bytes, json: bool = False) -> None:
    kind = b"application/json" if json else b"text/plain; charset=utf-8"
    headers = [(b"content-type", kind)]
    if status == 401:
        headers += _CHALLENGE
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text})


def dashboard_app(storage: Any, artifact_store: Any, engine: Engine, open_mode: bool) -> Any:
    from a2wsgi import WSGIMiddleware
    from optuna_dashboard import wsgi

    return DashboardGate(
        WSGIMiddleware(wsgi(storage, artifact_store=artifact_store)), engine, open_mode
    )
