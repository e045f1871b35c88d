"""Fault: the artifact disk fills up while a trial's checkpoint is written.

The artifact folder is a small tmpfs made by the test. After the first trial, a filler
file leaves room for the plots but not for a checkpoint; after the second, the filler goes.
The second trial fails alone, with a message naming the full folder; nothing half-written
stays on the disk or is served; the study goes on and completes its budget.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from optuna.trial import FrozenTrial, TrialState

from kdsearch.search import tables
from kdsearch.search.leaderboard import recommended_trial
from kdsearch.search.runner import run_study
from kdsearch.search.storage import make_storage

from ..search_helpers import ready_engine
from ._support import fault_spec, trials_of

pytestmark = pytest.mark.faults

SIZE_MB = 400  # room for two checkpoints; the filler takes the rest for the second trial


@contextlib.contextmanager
def small_disk(where: Path) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_disk_full_while_a_checkpoint_is_written(fault_teacher: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kd.db'}"
    with small_disk(tmp_path / "art") as art:
        filler = art / "filler.bin"

        def on_trial(_: str, trial: FrozenTrial) -> None:
            if trial.number == 0:  # leave 8 MB: room for plots, not for a checkpoint
                with filler.open("wb") as fh:
                    fh.truncate(0)
                    block = b"\0" * (1 << 20)
                    for _i in range((_free_bytes(art) >> 20) - 8):
                        fh.write(block)
            elif trial.number == 1:
                filler.unlink()

        spec = fault_spec(fault_teacher, n_trials=3, keep={"policy": "pareto", "onnx": False})
        name = run_study(spec, url, str(art), on_trial=on_trial)
        engine = ready_engine(url)
        trials = trials_of(make_storage(url, engine), name)
        assert [t.state for t in trials] == [
            TrialState.COMPLETE,
            TrialState.FAIL,
            TrialState.COMPLETE,
        ]
        error = trials[1].user_attrs["error"]
        assert error == (
            f"checkpoint.tar.gz was not stored: the artifact directory {art} is full "
            "(No space left on device): free some space"
        )
        run = tables.get(engine, name)
        assert run is not None and run.status == "completed" and run.claimed == 3
        # nothing half-written: every file on the disk is a listed, intact artifact
        listed = tables.list_artifacts(engine, name)
        assert {a["artifact_id"] for a in listed} == {p.name for p in art.iterdir()}
        ckpts = {a["trial_number"] for a in listed if a["kind"] == "checkpoint"}
        assert 1 not in ckpts and ckpts <= {0, 2}
        best = recommended_trial(trials, run.results)
        assert best is not None and best.number in ckpts  # what is served exists
        for a in listed:
            assert (art / a["artifact_id"]).stat().st_size == a["size_bytes"]
        assert shutil.disk_usage(art).free > 0
