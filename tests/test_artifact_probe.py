"""A store that refuses writes fails each trial before its training, with a clear error."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from kdsearch.search import tables
from kdsearch.search.artifacts import ArtifactStoreError, make_artifact_store, probe_writable
from kdsearch.search.runner import create_study
from kdsearch.search.storage import make_storage
from kdsearch.search.worker import Worker, WorkerOptions

from .search_helpers import ready_engine, tiny_spec


def test_probe_leaves_nothing_behind(tmp_path: Path) -> None:
    art = tmp_path / "art"
    probe_writable(make_artifact_store(str(art)))
    assert list(art.iterdir()) == []


def test_probe_names_the_folder_it_cannot_write(tmp_path: Path) -> None:
    art = tmp_path / "art"
    store = make_artifact_store(str(art))
    art.rmdir()
    art.write_text("a file where the artifact folder was")  # fails even for root
    with pytest.raises(ArtifactStoreError) as caught:
        probe_writable(store)
    assert str(caught.value).startswith(
        f"the trial was not started: cannot write to the artifact store at {art} ("
    )


def test_unwritable_store_fails_trials_before_training(tiny_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'kd.db'}"
    art = tmp_path / "art"
    name = create_study(tiny_spec(n_trials=3, max_consecutive_failures=2), url)
    worker = Worker(WorkerOptions(url, str(art), only_studies={name}, exit_when_idle=True))
    art.rmdir()  # the folder is made when the worker starts; it breaks afterwards
    art.write_text("a file where the artifact folder was")
    worker.run()
    trials = optuna.load_study(study_name=name, storage=make_storage(url)).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    for t in trials:
        assert t.user_attrs["error"].startswith("the trial was not started: cannot write")
        assert "metric:accuracy" not in t.user_attrs and "train_seconds" not in t.user_attrs
    run = tables.get(ready_engine(url), name)
    assert run is not None and run.status == "failed"
    assert run.error is not None and "the trial was not started" in run.error
