"""The API's long-lived trial cache: new and running trials show, finished ones are not re-read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from kdsearch.search.read_cache import StudyReader

from .search_helpers import pg_available, pg_database

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _add(study: optuna.Study, accuracy: float) -> None:
    trial = study.ask()
    trial.suggest_float("temperature", 1.0, 4.0)
    trial.set_user_attr("metric:accuracy", accuracy)
    study.tell(trial, accuracy)


def _mark_accuracy_by_hand(url: str, value: float) -> None:
    """Change every stored metric:accuracy behind Optuna's back (finished trials never change)."""
    with sa.create_engine(url).begin() as conn:
        conn.execute(
            sa.text("UPDATE trial_user_attributes SET value_json = :v WHERE key = :k"),
            {"v": str(value), "k": "metric:accuracy"},
        )


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cache.db'}"
        return
    if not pg_available():
        pytest.skip("PostgreSQL on 127.0.0.1:5432 is not reachable")
    with pg_database() as pg:
        yield pg


def test_new_and_running_trials_show_finished_ones_are_not_read_again(url: str) -> None:
    writer = optuna.create_study(study_name="s", storage=url, direction="maximize")
    for acc in (0.5, 0.6, 0.7):
        _add(writer, acc)
    reader = StudyReader(RDBStorage(url))
    first = reader.load("s").get_trials(deepcopy=False)
    assert [t.user_attrs["metric:accuracy"] for t in first] == [0.5, 0.6, 0.7]

    running = writer.ask()  # another process's trial, still running
    _add(writer, 0.8)
    second = reader.load("s").get_trials(deepcopy=False)
    assert [t.state for t in second] == [TrialState.COMPLETE] * 3 + [
        TrialState.RUNNING,
        TrialState.COMPLETE,
    ]
    writer.tell(running, 0.9)
    assert reader.load("s").get_trials(deepcopy=False)[3].state == TrialState.COMPLETE

    # Proof that finished trials come from memory: a change made behind Optuna's back
    # (which Optuna itself never makes) is not seen by the reader, but is by a fresh load.
    _mark_accuracy_by_hand(url, 0.0)
    cached = [t.user_attrs.get("metric:accuracy") for t in reader.load("s").get_trials()]
    assert cached == [0.5, 0.6, 0.7, None, 0.8]
    fresh = optuna.load_study(study_name="s", storage=url).get_trials()
    assert {t.user_attrs.get("metric:accuracy") for t in fresh} == {0.0, None}


def test_reused_study_id_drops_the_old_trials(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'reuse.db'}"
    old = optuna.create_study(study_name="old", storage=url, direction="maximize")
    _add(old, 0.9)
    reader = StudyReader(RDBStorage(url))
    assert len(reader.load("old").get_trials()) == 1

    optuna.delete_study(study_name="old", storage=url)  # deleted by another process
    new = optuna.create_study(study_name="new", storage=url, direction="maximize")
    assert new._study_id == old._study_id  # SQLite handed the id out again
    loaded = reader.load("new")
    assert loaded.study_name == "new"
    assert loaded.get_trials() == []
    with pytest.raises(KeyError):
        reader.load("old")


def test_delete_through_the_reader(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'delete.db'}"
    study = optuna.create_study(study_name="a", storage=url, direction="maximize")
    _add(study, 0.4)
    reader = StudyReader(RDBStorage(url))
    assert len(reader.load("a").get_trials()) == 1
    reader.delete("a")
    with pytest.raises(KeyError):
        reader.load("a")
    again = optuna.create_study(study_name="b", storage=url, direction="maximize")
    assert again._study_id == study._study_id
    assert reader.load("b").get_trials() == []


def test_cache_starts_over_past_max_studies(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'many.db'}"
    for name in ("a", "b", "c"):
        _add(optuna.create_study(study_name=name, storage=url, direction="maximize"), 0.5)
    reader = StudyReader(RDBStorage(url), max_studies=2)
    for name in ("a", "b"):
        reader.load(name).get_trials()
    _mark_accuracy_by_hand(url, 0.25)
    assert reader.load("a").get_trials()[0].user_attrs["metric:accuracy"] == 0.5  # cached
    # A third study starts a fresh cache: "a" is read from the database again.
    assert reader.load("c").get_trials()[0].user_attrs["metric:accuracy"] == 0.25
    assert reader.load("a").get_trials()[0].user_attrs["metric:accuracy"] == 0.25
