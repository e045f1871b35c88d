"""Leaderboard pages served from memory while a study does not change.

Building a leaderboard page means a row per trial, the Pareto front, a sort and a JSON
rendering: tens of milliseconds on a study of 1,000 trials, for every request. A study only
changes when a trial is added, changes state or (while it runs) gains parameters or user
attributes, or when the study's final results are written. So each study keeps, under a
*change marker* of exactly those things (``search.read_cache.StudyReader.change_marker``,
a few indexed queries, plus a digest of the final results), its rows and allowed sort keys,
each sorted and filtered view, and each rendered page (bytes). A request whose marker
matches is answered from memory without loading the study; a request after any change
loads it and rebuilds. The marker is read before the trials, so what is stored is never
older than its marker: a new trial shows up in the very next request.

Memory is bounded: at most ``max_studies`` studies (least recently used first out), and per
study ``max_pages`` rendered pages and as many sorted views.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from kdsearch.search.leaderboard import all_rows, select_rows, sort_keys

from .schemas import TrialPage, TrialRow, json_safe

__all__ = ["LeaderboardPages", "Loader"]

# what a miss needs from the study: its trials, objective directions and metric names
Loader = Callable[[], tuple[Sequence[FrozenTrial], Sequence[StudyDirection], Sequence[str] | None]]


def _results_token(final: Mapping[str, Any] | None) -> str:
    if not final:
        return ""
    text = json.dumps(final, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


@dataclass
class _Study:
    marker: Hashable
    rows: list[dict[str, Any]]
    allowed: list[str]
    views: OrderedDict[tuple[Any, ...], list[dict[str, Any]]] = field(default_factory=OrderedDict)
    pages: OrderedDict[tuple[Any, ...], bytes] = field(default_factory=OrderedDict)


class LeaderboardPages:
    """Rendered leaderboard pages per (study, change marker); thread-safe."""

    def __init__(self, max_studies: int = 64, max_pages: int = 256) -> None:
        self.max_studies, self.max_pages = max_studies, max_pages
        self._lock = threading.Lock()
        self._studies: OrderedDict[Hashable, _Study] = OrderedDict()
        self.hits = self.misses = 0  # pages served from memory / rendered

    def _entry(
        self, key: Hashable, marker: Hashable, load: Loader, final: Mapping[str, Any] | None
    ) -> _Study:
        marker = (marker, _results_token(final))
        with self._lock:
            entry = self._studies.get(key)
            if entry is not None and entry.marker == marker:
                self._studies.move_to_end(key)
                return entry
        trials, directions, metric_names = load()
        rows = all_rows(trials, directions, final)
        entry = _Study(marker, rows, sort_keys(rows, metric_names))
        with self._lock:
            self._studies[key] = entry
            self._studies.move_to_end(key)
            while len(self._studies) > self.max_studies:
                self._studies.popitem(last=False)
        return entry

    def page(
        self,
        key: Hashable,
        marker: Hashable,
        load: Loader,
        final: Mapping[str, Any] | None,
        *,
        sort: str | None = None,
        descending: bool = True,
        states: set[str] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> bytes:
        """The page as JSON bytes (a :class:`service.schemas.TrialPage`). ``key`` names the
        study for the cache, e.g. ``(name, storage id)``: a study deleted and made again under
        the same name gets a new id, so it never meets the old one's pages. ``marker``: the
        study's change marker, read before ``load`` (called only when it changed).
        ``final``: the study's final results (``search.final``), which the rows carry.

        Raises ``ValueError`` for an unknown sort key or trial state.
        """
        entry = self._entry(key, marker, load, final)
        view_key = (sort, descending, tuple(sorted(states)) if states is not None else None)
        page_key = (*view_key, limit, offset)
        with self._lock:
            body = entry.pages.get(page_key)
            if body is not None:
                entry.pages.move_to_end(page_key)
                self.hits += 1
                return body
            view = entry.views.get(view_key)
        if view is None:
            view = select_rows(entry.rows, entry.allowed, sort, descending, states)
        items = [TrialRow(**json_safe(r)) for r in view[offset : offset + limit]]
        body = (
            TrialPage(total=len(view), limit=limit, offset=offset, items=items)
            .model_dump_json()
            .encode()
        )
        with self._lock:
            self.misses += 1
            entry.views[view_key] = view
            entry.pages[page_key] = body
            for cache in (entry.views, entry.pages):
                cache.move_to_end(page_key if cache is entry.pages else view_key)
                while len(cache) > self.max_pages:
                    cache.popitem(last=False)
        return body
