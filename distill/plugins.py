"""Plug-ins: modules that register metrics, losses, student families or methods.

``KDSEARCH_PLUGINS`` names them, comma-separated (importable module names, e.g.
``mycompany.kd_metrics``). The ``kdsearch`` command, the REST service and every worker
process import them at start-up, so a study that names a plug-in's metric or family is
understood everywhere its trials run. In Python, import the module yourself.
"""

from __future__ import annotations

import importlib
import os

from .errors import ConfigError

PLUGINS_ENV = "KDSEARCH_PLUGINS"


def load_plugins(names: str | None = None) -> list[str]:
    """Import the modules ``names`` (default: ``$KDSEARCH_PLUGINS``) lists; returns them."""
    raw = os.environ.get(PLUGINS_ENV, "") if names is None else names
    loaded = []
    for name in (n.strip() for n in raw.split(",")):
        if not name:
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(
                f"{PLUGINS_ENV}: cannot import plug-in {name!r} ({exc}); put its folder on "
                "PYTHONPATH or install it"
            ) from None
        loaded.append(name)
    return loaded
