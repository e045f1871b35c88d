"""A long-lived read cache of studies' trials, for the REST API.

Each ``optuna.load_study(storage=RDBStorage)`` wraps the storage in a fresh cache, so a
request that reads a study's trials reads every one of them from the database again: on a
study of 1,000 trials that is seconds per leaderboard page, and the API pool runs dry under
a few clients. Finished trials never change (Optuna refuses updates to them), so one cache
kept for the life of the service only has to fetch the trials that are new or still
running since the last read. That is Optuna's own ``_CachedStorage`` (what a worker's
study uses), held once instead of once per request.

Two guards on top:

- a study id may be reused for a new study after the old one was deleted by another
  process (SQLite hands out the largest rowid again): when an id's name changes the
  whole cache is dropped;
- at most ``max_studies`` studies are held; beyond that the cache starts empty again (a
  cold read costs what every read cost before).

:meth:`StudyReader.change_marker` answers "has this study changed?" without loading it:
a few indexed queries that count the study's trials by state and, for its unfinished
trials, their parameters and user attributes (what a leaderboard row shows of them). A
state only moves forward and a finished trial never changes, so the marker changes with
every new trial, every state change and every new parameter or attribute of a running
trial (``service.page_cache`` serves pages under it).
"""

from __future__ import annotations

import threading
from collections.abc import Hashable

import optuna
import sqlalchemy as sa
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages._rdb import models
from optuna.trial import TrialState

from .tables import connected

_UNFINISHED = (TrialState.RUNNING, TrialState.WAITING)

__all__ = ["StudyReader"]


class StudyReader:
    """Loads studies over one shared trial cache (thread-safe)."""

    def __init__(self, storage: RDBStorage, max_studies: int = 256) -> None:
        self._backend = storage
        self._max_studies = max_studies
        self._lock = threading.Lock()
        self._cache = _CachedStorage(storage)
        self._names: dict[int, str] = {}

    @property
    def storage(self) -> BaseStorage:
        """The caching storage (pass it to Optuna calls that only read or delete)."""
        return self._cache

    def load(self, study_name: str) -> optuna.Study:
        """The study, reading only trials that are new or unfinished since the last load.

        Raises ``KeyError`` when no study has that name.
        """
        study_id = self._backend.get_study_id_from_name(study_name)
        with self._lock:
            known = self._names.get(study_id)
            if (known is not None and known != study_name) or (
                known is None and len(self._names) >= self._max_studies
            ):
                self._cache = _CachedStorage(self._backend)
                self._names = {}
            self._names[study_id] = study_name
            cache = self._cache
        return optuna.load_study(study_name=study_name, storage=cache)

    def change_marker(
        self, study_name: str, bind: sa.Connection | None = None
    ) -> tuple[int, Hashable]:
        """``(study id, marker)``: equal markers mean the study's trials look the same to a
        leaderboard. One query for a study with no unfinished trial, two otherwise; raises
        ``KeyError`` when no study has that name. ``bind``: a connection to the same database
        to run them on (the storage's pool otherwise)."""
        study, trial = models.StudyModel.__table__, models.TrialModel.__table__
        params, attrs = models.TrialParamModel.__table__, models.TrialUserAttributeModel.__table__
        with connected(bind or self._backend.engine) as conn:
            counts = conn.execute(
                sa.select(study.c.study_id, trial.c.state, sa.func.count(trial.c.trial_id))
                .select_from(study.outerjoin(trial, trial.c.study_id == study.c.study_id))
                .where(study.c.study_name == study_name)
                .group_by(study.c.study_id, trial.c.state)
            ).all()
            if not counts:
                raise KeyError(study_name)
            study_id = int(counts[0][0])
            by_state = tuple(
                sorted((TrialState(s).name, int(n)) for _, s, n in counts if s is not None)
            )
            running: tuple[tuple[int, str, int, int], ...] = ()
            if any(TrialState(s) in _UNFINISHED for _, s, _n in counts if s is not None):
                n_params = (
                    sa.select(sa.func.count())
                    .where(params.c.trial_id == trial.c.trial_id)
                    .scalar_subquery()
                )
                n_attrs = (
                    sa.select(sa.func.count())
                    .where(attrs.c.trial_id == trial.c.trial_id)
                    .scalar_subquery()
                )
                rows = conn.execute(
                    sa.select(trial.c.number, trial.c.state, n_params, n_attrs)
                    .where(trial.c.study_id == study_id, trial.c.state.in_(_UNFINISHED))
                    .order_by(trial.c.number)
                ).all()
                running = tuple((int(n), TrialState(s).name, int(p), int(a)) for n, s, p, a in rows)
        return study_id, (by_state, running)

    def delete(self, study_name: str) -> None:
        """Delete the study from the database and from the cache.

        Raises ``KeyError`` when no study has that name.
        """
        with self._lock:
            cache = self._cache
            for study_id, name in list(self._names.items()):
                if name == study_name:
                    del self._names[study_id]
        optuna.delete_study(study_name=study_name, storage=cache)
