"""kdsearch: hyperparameter search for knowledge distillation, guided by confidence preservation.

The public API is what this module exports:

- :func:`distill_one` runs one distillation and returns a :class:`Result`;
- :class:`Study` creates, runs and reads a search (leaderboard, best checkpoint);
- :func:`load_student` loads a saved student and its tokenizer;
- :class:`StudySpec` and :class:`RunConfig` are the spec models (pydantic) of a study and of
  one distillation.

Everything else is private, as in Optuna: ``kdsearch.distill`` (the engine),
``kdsearch.search`` (studies, workers, storage), ``kdsearch.service`` (the REST API and the
``kdsearch`` command) and ``kdsearch.migrations`` (the database schema) may change between
releases. In a source checkout those four are the top-level folders of the same names;
``kdsearch/`` links to them, and the wheel installs them inside ``kdsearch/``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Result", "RunConfig", "Study", "StudySpec", "distill_one", "load_student"]

if TYPE_CHECKING:
    from ._api import Result, Study, distill_one, load_student
    from .distill.config import RunConfig
    from .search.spec import StudySpec


def __getattr__(name: str) -> Any:
    # imported on first use: `kdsearch --help` need not load torch and transformers
    if name in ("Result", "Study", "distill_one", "load_student"):
        from . import _api

        return getattr(_api, name)
    if name == "RunConfig":
        from .distill.config import RunConfig

        return RunConfig
    if name == "StudySpec":
        from .search.spec import StudySpec

        return StudySpec
    raise AttributeError(f"module 'kdsearch' has no attribute {name!r}")
