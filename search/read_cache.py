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
"""

from __future__ import annotations

import threading

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._cached_storage import _CachedStorage

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
