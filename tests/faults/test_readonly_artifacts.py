"""Fault: the artifact directory turns read-only in the middle of a study.

The tests run as root, which ``chmod`` does not stop. The worker runs without
CAP_DAC_OVERRIDE (``setpriv --bounding-set=-dac_override,-fowner``): root that obeys file
modes like any user, so ``chmod -R a-w`` really blocks its writes, while everything it
owns and may write (database, caches, /tmp) stays writable.
"""

from __future__ import annotations

import errno
import re
import shutil
import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from kdsearch.search import tables
from kdsearch.search.artifacts import ArtifactStoreError, make_artifact_store, store_failure, upload
from kdsearch.search.runner import create_study
from kdsearch.search.storage import make_storage

from ..proc_helpers import run_cli, start_process, wait_for, worker_args
from ..search_helpers import ready_engine
from ._support import (
    NO_DAC_OVERRIDE,
    assert_none_running,
    assert_nothing_lost,
    fault_spec,
    snapshot,
    states,
    trials_of,
)

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)"),
]


def test_unwritable_store_is_a_clear_trial_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kd.db'}"
    engine = ready_engine(url)
    trial = optuna.create_study(storage=make_storage(url, engine)).ask()
    art = tmp_path / "art"
    store = make_artifact_store(str(art))
    art.rmdir()
    art.write_text("a file where the artifact folder was")  # a failure root cannot bypass
    src = tmp_path / "plot.png"
    src.write_bytes(b"\x89PNG")
    pattern = rf"plot.png was not stored: cannot write .*{re.escape(str(art))}"
    with pytest.raises(ArtifactStoreError, match=pattern):
        upload(store, engine, trial, src, "plot", "plot.png")
    assert tables.list_artifacts(engine, trial.study.study_name) == []  # nothing half-recorded
    denied = PermissionError(errno.EACCES, "Permission denied", str(art / "abc"))
    assert str(store_failure(denied, "checkpoint.tar.gz")) == (
        f"checkpoint.tar.gz was not stored: the artifact directory {art} is not writable "
        "(Permission denied): make it writable for the worker's user"
    )


def test_read_only_artifact_dir_fails_trials_then_the_study(
    fault_teacher: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'kd.db'}"
    art = tmp_path / "art"
    engine = ready_engine(url)
    storage = make_storage(url, engine)
    name = create_study(fault_spec(fault_teacher, n_trials=4, max_consecutive_failures=2), url)
    worker = start_process(
        *worker_args(url, art, "--exit-when-idle"),
        log=tmp_path / "worker.log",
        prefix=NO_DAC_OVERRIDE,
    )
    try:
        wait_for(
            lambda: states(trials_of(storage, name)).get("COMPLETE", 0) >= 1,
            400,
            "a first COMPLETE trial",
            procs=[worker],
        )
        before = snapshot(engine, storage, name, art)
        subprocess.run(["chmod", "-R", "a-w", str(art)], check=True)
        assert worker.wait(400) == 0, worker.tail()
    finally:
        worker.stop()
        subprocess.run(["chmod", "-R", "u+w", str(art)], check=False)
    trials = trials_of(storage, name)
    assert_none_running(trials)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 2 and trials[-2:] == failed, states(trials)  # then it stopped
    for t in failed:
        # the trial in training when the folder turned read-only fails at its upload, a
        # later one before its training (the write probe)
        error = t.user_attrs["error"]
        assert "was not stored: the artifact" in error or "was not started: the artifact" in error
        assert f"{art} is not writable (Permission denied)" in t.user_attrs["error"]
    run = tables.get(engine, name)
    assert run is not None and run.status == "failed" and run.error is not None
    assert run.error.startswith("2 trials failed in a row; the last error: ")
    assert "is not writable (Permission denied)" in run.error
    assert_nothing_lost(engine, storage, name, art, before)
    shown = run_cli("study", "show", name, "--database-url", url)
    assert shown.returncode == 0, shown.stderr
    assert f"study {name}: failed" in shown.stdout and "is not writable" in shown.stdout
