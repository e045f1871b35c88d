"""Leaderboard pages served from memory: unchanged studies hit the cache, any change to a
study (a new trial, a state change, a running trial's new attributes, final results)
shows up in the very next request, over a real uvicorn server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.storages import RDBStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState, create_trial

from kdsearch.search.read_cache import StudyReader
from kdsearch.service.page_cache import LeaderboardPages

from .search_helpers import tiny_spec
from .test_api import Server, alice_server

DIRECTIONS = [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]
NAMES = ["accuracy", "conf_sigma"]


def _trial(
    number: int, acc: float, sigma: float, state: TrialState = TrialState.COMPLETE
) -> FrozenTrial:
    kwargs: dict[str, Any] = {}
    if state == TrialState.COMPLETE:
        kwargs["values"] = [acc, sigma]
    t = create_trial(
        state=state,
        params={"temperature": 1.0 + number},
        distributions={"temperature": FloatDistribution(0.5, 20.0)},
        user_attrs={"metric:accuracy": acc, "metric:conf_sigma": sigma},
        **kwargs,
    )
    t.number = number
    return t


def test_unchanged_study_is_served_from_memory_and_each_change_rebuilds(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kd.db'}"
    study = optuna.create_study(storage=url, study_name="s", directions=DIRECTIONS)
    study.set_metric_names(NAMES)
    study.add_trials([_trial(0, 0.80, 0.10), _trial(1, 0.82, 0.12), _trial(2, 0.70, 0.20)])
    reader = StudyReader(RDBStorage(url))
    pages = LeaderboardPages()
    loads = 0

    def load() -> Any:
        nonlocal loads
        loads += 1
        s = reader.load("s")
        return s.get_trials(deepcopy=False), s.directions, s.metric_names

    def get(final: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        study_id, marker = reader.change_marker("s")
        return dict(json.loads(pages.page(("s", study_id), marker, load, final, **kw)))

    first = get()
    assert [r["number"] for r in first["items"]] == [0, 1, 2]
    assert [r["pareto"] for r in first["items"]] == [True, True, False]
    assert (pages.hits, pages.misses, loads) == (0, 1, 1)
    assert get() == first
    assert (pages.hits, pages.misses, loads) == (1, 1, 1)  # served without loading the study
    # another view of the same study: rendered once from the stored rows, then served
    by_acc = get(sort="accuracy", limit=2)
    assert [r["number"] for r in by_acc["items"]] == [1, 0] and by_acc["total"] == 3
    get(sort="accuracy", limit=2)
    assert (pages.hits, pages.misses, loads) == (2, 2, 1)
    # a new trial that dominates everything: a new marker, a new front
    study.add_trial(_trial(3, 0.90, 0.05))
    page = get()
    assert page["total"] == 4 and [r["pareto"] for r in page["items"]] == [False] * 3 + [True]
    assert (pages.misses, loads) == (3, 2)
    # the final results change the rows (test metrics) under the same trials
    final = {"test": {"3": {"accuracy": 0.88}}}
    assert get(final)["items"][3]["test"] == {"accuracy": 0.88}
    assert (pages.misses, loads) == (4, 3)
    with pytest.raises(ValueError, match="unknown sort key 'bogus'"):
        get(sort="bogus")


def test_change_marker_sees_new_trials_states_and_running_attributes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kd.db'}"
    study = optuna.create_study(storage=url, study_name="s", directions=DIRECTIONS)
    reader = StudyReader(RDBStorage(url))
    seen = [reader.change_marker("s")]

    def changed() -> bool:
        seen.append(reader.change_marker("s"))
        return seen[-1] != seen[-2]

    assert not changed()
    study.add_trial(_trial(0, 0.8, 0.1))
    assert changed()
    trial = study.ask()  # a worker starts a trial
    assert changed()
    trial.suggest_float("temperature", 1.0, 4.0)  # it samples a parameter
    assert changed()
    trial.set_user_attr("method", "kd")  # its row gains the method
    assert changed()
    assert not changed()
    study.tell(trial, [0.81, 0.1])  # it completes
    assert changed()
    with pytest.raises(KeyError):
        reader.change_marker("nope")


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[Server]:
    yield from alice_server(tmp_path)


def _board(c: Any, sid: str, query: str = "") -> dict[str, Any]:
    r = c.get(f"/v1/studies/{sid}/trials{query}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    return dict(r.json())


def test_a_new_trial_and_a_state_change_show_up_in_the_next_request(server: Server) -> None:
    with server.client() as c:
        r = c.post("/v1/studies", json=tiny_spec(n_trials=5).model_dump(mode="json"))
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        study = optuna.load_study(study_name=sid, storage=server.database_url)
        assert _board(c, sid)["total"] == 0
        study.add_trial(_trial(0, 0.80, 0.10))
        page = _board(c, sid)
        assert page["total"] == 1 and page["items"][0]["pareto"] is True
        assert _board(c, sid) == page  # unchanged: the same page

        # a worker starts a trial: it is listed at once, RUNNING
        trial = study.ask()
        page = _board(c, sid)
        assert [r["state"] for r in page["items"]] == ["COMPLETE", "RUNNING"]
        # it samples a parameter: the running row shows it in the next request
        trial.suggest_float("temperature", 1.0, 4.0)
        assert _board(c, sid)["items"][1]["params"] == {"temperature": trial.params["temperature"]}
        # it completes and dominates trial 0: states, values and the front move at once
        trial.set_user_attr("metric:accuracy", 0.9)
        trial.set_user_attr("metric:conf_sigma", 0.05)
        study.tell(trial, [0.9, 0.05])
        page = _board(c, sid)
        assert [r["state"] for r in page["items"]] == ["COMPLETE", "COMPLETE"]
        assert [r["pareto"] for r in page["items"]] == [False, True]
        assert page["items"][1]["values"] == [0.9, 0.05]
        sorted_page = _board(c, sid, "?sort=accuracy&order=desc&limit=1")
        assert sorted_page["total"] == 2 and sorted_page["items"][0]["number"] == 1

        # a failed trial shows up with its error, and the state filter sees it
        failed = study.ask()
        failed.set_user_attr("error", "boom")
        study.tell(failed, state=TrialState.FAIL)
        fails = _board(c, sid, "?state=FAIL")
        assert fails["total"] == 1 and fails["items"][0]["error"] == "boom"
        assert _board(c, sid)["total"] == 3
