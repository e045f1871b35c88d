"""Leaderboard pages served from memory while a study does not change.

Building a leaderboard page means a row per trial, the Pareto front, a sort and a JSON
rendering: tens of milliseconds on a study of 1,000 trials, for every request. A study only
changes when a trial is added, changes state or (while it runs) gains parameters or user
attributes, or when the study's final results are written. So each study keeps, under a
*change marker* of exactly those things, its rows and allowed sort keys, each sorted and
filtered view, and each rendered page (bytes). A request whose marker matches is answered
from memory; a request after any change rebuilds (the marker is read from the trials the
request loads anyway, so a new trial shows up in the very next request).

Memory is bounded: at most ``max_studies`` studies (least recently used first out), and per
study ``max_pages`` rendered pages and as many sorted views.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter, OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from search.leaderboard import all_rows, select_rows, sort_keys

from .schemas import TrialPage, TrialRow, json_safe

__all__ = ["LeaderboardPages", "change_marker"]


def _results_token(final: Mapping[str, Any] | None) -> str:
    if not final:
        return ""
    text = json.dumps(final, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def change_marker(trials: Sequence[FrozenTrial], final: Mapping[str, Any] | None) -> Hashable:
    """Equal for two reads of a study exactly when its leaderboard cannot differ.

    Finished trials never change (Optuna refuses updates to them), and a trial's state only
    moves forward, so the number of trials in each state changes with every new trial and
    every state change. An unfinished trial's row changes as it gains parameters and user
    attributes (its method, an error): their counts enter the marker too. The final results
    enter as a digest.
    """
    states = Counter(t.state.name for t in trials)
    running = tuple(
        (t.number, t.state.name, len(t.params), len(t.user_attrs))
        for t in trials
        if not t.state.is_finished()
    )
    return (len(trials), tuple(sorted(states.items())), running, _results_token(final))


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

    def _entry(self, key: Hashable, study: optuna.Study, final: Mapping[str, Any] | None) -> _Study:
        trials = study.get_trials(deepcopy=False)
        marker = change_marker(trials, final)
        with self._lock:
            entry = self._studies.get(key)
            if entry is not None and entry.marker == marker:
                self._studies.move_to_end(key)
                return entry
        # directions and metric names are read only here: each is a storage query
        rows = all_rows(trials, study.directions, final)
        entry = _Study(marker, rows, sort_keys(rows, study.metric_names))
        with self._lock:
            self._studies[key] = entry
            self._studies.move_to_end(key)
            while len(self._studies) > self.max_studies:
                self._studies.popitem(last=False)
        return entry

    def page(
        self,
        key: Hashable,
        study: optuna.Study,
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
        the same name gets a new id, so it never meets the old one's pages. ``final``: the
        study's final results (``search.final``), which the rows carry.

        Raises ``ValueError`` for an unknown sort key or trial state.
        """
        entry = self._entry(key, study, final)
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
