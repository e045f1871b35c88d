"""One logging set-up for every kdsearch process: the CLI and ``serve``'s embedded workers."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(name)s %(message)s"
NOISY = ("optuna", "sqlalchemy", "httpx", "alembic")


def configure_logging(level: int = logging.INFO) -> None:
    """kdsearch's own lines at ``level`` on stderr; libraries' chatter at WARNING only."""
    logging.basicConfig(level=level, format=FORMAT)
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
