"""Trial artifacts (plots, student checkpoints) through ``optuna.artifacts``.

The store is a ``FileSystemArtifactStore`` in a directory by default; ``s3://bucket/prefix``
selects Optuna's Boto3 store. Checkpoints travel as ``.tar.gz`` archives of the Hugging
Face folder. The keep policy deletes checkpoints that leave the Pareto front (or the top
k), so disk use stays bounded however many trials run.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import tarfile
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import Engine

from kdsearch.distill.errors import KDSearchError

from . import jobs, tables
from .dominance import dominates
from .leaderboard import is_feasible, pareto_front, recommendation_key, recommended_trial
from .spec import KeepPolicy

CHECKPOINT = "checkpoint.tar.gz"


def make_artifact_store(location: str) -> Any:
    if location.startswith("s3://"):
        from optuna.artifacts import Boto3ArtifactStore

        bucket, _, _prefix = location[len("s3://") :].partition("/")
        return Boto3ArtifactStore(bucket)
    path = Path(location).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(path))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def archive_folder(folder: Path, out: Path) -> Path:
    """A ``.tar.gz`` whose members sit under ``checkpoint/`` (no absolute paths)."""
    # Level 1: float weights barely compress (level 9 took ~2 s for 7% on 57 MB).
    with tarfile.open(out, "w:gz", compresslevel=1) as tar:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                tar.add(f, arcname=str(Path("checkpoint") / f.relative_to(folder)))
    return out


class ArtifactStoreError(KDSearchError):
    """The artifact store refused a write (permissions, a full disk, ...)."""


def store_failure(exc: OSError, name: str, store: Any = None) -> ArtifactStoreError:
    """A trial error that names the artifact folder and what to do about it."""
    return ArtifactStoreError(f"{name} was not stored: {_what_failed(exc, store)}")


def probe_writable(store: Any) -> None:
    """Write and remove a few bytes: a store that refuses writes fails a trial before its
    training, not after it (and leaves no half-recorded artifact on the trial)."""
    probe = f"kdsearch-write-probe-{uuid.uuid4().hex}"
    try:
        store.write(probe, io.BytesIO(b"kdsearch"))
        store.remove(probe)
    except OSError as exc:
        raise ArtifactStoreError(f"the trial was not started: {_what_failed(exc, store)}") from exc


def _what_failed(exc: OSError, store: Any = None) -> str:
    base = getattr(store, "_base_path", None)  # FileSystemArtifactStore's folder
    where = str(Path(exc.filename).parent) if exc.filename else str(base or "the artifact store")
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        what = f"the artifact directory {where} is not writable ({reason}): make it writable"
        what += " for the worker's user"
    elif exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = f"the artifact directory {where} is full ({reason}): free some space"
    else:
        what = f"cannot write to the artifact store at {where} ({reason})"
    return what


class _NoHalfWrites:
    """The store, except that a write that fails (a full disk) removes what it left, so no
    half-written artifact stays behind to fill the disk further or be mistaken for one."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def write(self, artifact_id: str, content_body: Any) -> None:
        try:
            self._store.write(artifact_id, content_body)
        except BaseException:
            with contextlib.suppress(Exception):
                self._store.remove(artifact_id)
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def upload(
    store: Any, engine: Engine, trial: optuna.Trial, path: Path, kind: str, name: str
) -> str:
    try:
        artifact_id = upload_artifact(
            artifact_store=_NoHalfWrites(store), file_path=str(path), study_or_trial=trial
        )
    except OSError as exc:
        raise store_failure(exc, name, store) from exc
    tables.record_artifact(
        engine,
        trial.study.study_name,
        trial.number,
        kind,
        name,
        artifact_id,
        sha256_file(path),
        path.stat().st_size,
    )
    trial.set_user_attr(f"artifact:{name}", artifact_id)
    return artifact_id


def upload_trial_outputs(
    store: Any, engine: Engine, trial: optuna.Trial, checkpoint_dir: Path, plots: dict[str, Path]
) -> None:
    for name, path in plots.items():
        upload(store, engine, trial, path, "plot", f"{name}.png")
    with tempfile.TemporaryDirectory() as tmp:
        archive = archive_folder(checkpoint_dir, Path(tmp) / CHECKPOINT)
        upload(store, engine, trial, archive, "checkpoint", CHECKPOINT)


def trials_to_keep(
    trials: Sequence[FrozenTrial],
    directions: Sequence[Any],
    policy: KeepPolicy,
    also: set[int] | None = None,
) -> set[int]:
    """Trial numbers whose checkpoints stay: the front (or top k), the recommended one and
    ``also`` (the trials the study's end scores or confirms)."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    keep: set[int] = set(also or ())
    best = recommended_trial(complete)
    if best is not None:
        keep.add(best.number)
    if policy.policy == "pareto":
        front = pareto_front(complete, directions)
        if not front:  # nothing feasible yet: keep the unconstrained front to choose from
            front = unconstrained_front(complete, directions)
        keep |= {t.number for t in front}
    else:
        keep |= {t.number for t in ranked(complete)[: policy.k]}
    return keep


def unconstrained_front(
    trials: Sequence[FrozenTrial], directions: Sequence[Any]
) -> list[FrozenTrial]:
    with_values = [t for t in trials if t.values is not None]
    return [
        t
        for t in with_values
        if not any(dominates(o.values, t.values, directions) for o in with_values if o is not t)
    ]


def ranked(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The recommended rule as an order: feasible trials first, then ``recommendation_key``."""
    return sorted(trials, key=lambda t: (not is_feasible(t), *recommendation_key(t)))


def apply_keep_policy(
    store: Any, engine: Engine, study: optuna.Study, policy: KeepPolicy
) -> list[int]:
    """Delete checkpoints outside the keep set; returns the trial numbers pruned of them."""
    trials = study.get_trials(deepcopy=False)
    ending = {j.trial_number for j in jobs.list_jobs(engine, study.study_name)}
    keep = trials_to_keep(trials, study.directions, policy, ending)
    finished = {t.number for t in trials if t.state.is_finished()}
    doomed = [
        a
        for a in tables.list_artifacts(engine, study.study_name, kind="checkpoint")
        if a["trial_number"] in finished and a["trial_number"] not in keep
    ]
    for a in doomed:
        # already gone (another worker, or by hand): still mark it
        with contextlib.suppress(Exception):
            store.remove(a["artifact_id"])
    tables.mark_deleted(engine, [a["id"] for a in doomed])
    return sorted(a["trial_number"] for a in doomed)
