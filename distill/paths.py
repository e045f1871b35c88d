"""Where kdsearch keeps things on disk (teacher cache, fetched datasets)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """Root of kdsearch's own files: ``$KDSEARCH_HOME``, else ``~/.cache/kdsearch``."""
    env = os.environ.get("KDSEARCH_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "kdsearch"


def datasets_dir() -> Path:
    return home() / "datasets"


def teachers_dir() -> Path:
    return home() / "teachers"


def network_allowed() -> bool:
    """Hub downloads only when the user has not asked for offline mode."""
    off = {"1", "true", "yes", "on"}
    return not (
        os.environ.get("HF_HUB_OFFLINE", "").lower() in off
        or os.environ.get("TRANSFORMERS_OFFLINE", "").lower() in off
        or os.environ.get("KDSEARCH_OFFLINE", "").lower() in off
    )
