"""kdsearch's Python API: one distillation, a study, a saved student.

Everything here is re-exported by ``kdsearch``; the modules under ``kdsearch.distill``,
``kdsearch.search`` and ``kdsearch.service`` are the implementation and may change.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from kdsearch.distill.config import RunConfig
from kdsearch.distill.configfile import load_model, parse_model
from kdsearch.distill.errors import ConfigError
from kdsearch.distill.run import DistillResult, run_distillation, write_outputs
from kdsearch.search.spec import StudySpec

Result = DistillResult

DEFAULT_STORAGE = "sqlite:///kdsearch.db"
DEFAULT_ARTIFACTS = "kdsearch-artifacts"


def _model(model: Any, value: Any, what: str) -> Any:
    if isinstance(value, model):
        return value
    if isinstance(value, Mapping):
        return parse_model(model, dict(value), what)
    if isinstance(value, str | Path):
        return load_model(model, value)
    raise ConfigError(f"{what}: pass a {model.__name__}, a dict or a YAML/JSON file path")


def distill_one(
    config: RunConfig | Mapping[str, Any] | str | Path, out: str | Path | None = None
) -> Result:
    """Distill one student from ``config`` (a :class:`RunConfig`, a dict of its fields, or a
    YAML/JSON file such as ``examples/distill_quick.yaml``) and return the result: its
    ``metrics`` (accuracy, conf_sigma, ...), ``history`` of evaluations and the trained
    ``student``. With ``out``, also write ``metrics.json``, the ``checkpoint/`` folder (load
    it with :func:`load_student`) and plots there.

    >>> import kdsearch
    >>> result = kdsearch.distill_one({
    ...     "data": {"source": "builtin:rotten_tomatoes", "max_train": 64, "max_eval": 48,
    ...              "max_length": 32},
    ...     "teacher": {"model": "builtin:minilm-l6", "finetune": False},
    ...     "student": {"kind": "truncate", "num_layers": 1},
    ...     "train": {"epochs": 1, "batch_size": 32},
    ...     "metrics": {"latency_repeats": 1},
    ... })
    >>> 0.0 <= result.metrics["accuracy"] <= 1.0
    True
    >>> sorted(k for k in result.metrics if k.startswith("conf_"))[:3]
    ['conf_bias', 'conf_mae', 'conf_sigma']
    """
    cfg = _model(RunConfig, config, "config")
    result = run_distillation(cfg)
    if out is not None:
        write_outputs(result, cfg, out, onnx=False)
    return result


def load_student(path: str | Path) -> tuple[Any, Any]:
    """A saved student and its tokenizer, from a checkpoint folder or the ``.tar.gz`` the
    REST API serves (safetensors only; nothing in the files is executed). The model is a
    ``torch.nn.Module`` of the student's family, in eval mode, called as
    ``model(input_ids, attention_mask)`` (a sentence-pair student also takes the tokenizer's
    ``token_type_ids``: ``model(input_ids, attention_mask, frozenset(), token_type_ids)``);
    ``kdsearch predict FOLDER TEXT...`` classifies texts with it from the command line.

    >>> import kdsearch, tempfile
    >>> out = tempfile.mkdtemp()
    >>> _ = kdsearch.distill_one({
    ...     "data": {"source": "builtin:rotten_tomatoes", "max_train": 64, "max_eval": 48,
    ...              "max_length": 32},
    ...     "teacher": {"model": "builtin:minilm-l6", "finetune": False},
    ...     "student": {"kind": "truncate", "num_layers": 1},
    ...     "train": {"epochs": 1, "batch_size": 32},
    ...     "metrics": {"latency_repeats": 1},
    ... }, out=out)
    >>> model, tokenizer = kdsearch.load_student(f"{out}/checkpoint")
    >>> model.num_layers
    1
    """
    from kdsearch.distill.checkpoint import load_student as load
    from kdsearch.distill.predict import checkpoint_folder

    with checkpoint_folder(path) as folder:  # a folder as it is; an archive unpacked
        return load(folder)


class Study:
    """A distillation study in a database: trials sampled by Optuna, each a distillation
    scored on accuracy and confidence preservation.

    ``storage``: a database URL (SQLite for one machine, PostgreSQL for many);
    ``artifacts``: the folder that keeps checkpoints and plots. The REST service and
    ``kdsearch worker`` processes see the same study when they share the database.

    >>> import kdsearch, tempfile
    >>> tmp = tempfile.mkdtemp()
    >>> spec = kdsearch.StudySpec.model_validate({
    ...     "teacher": {"model": "builtin:minilm-l6", "finetune": False},
    ...     "data": {"source": "builtin:rotten_tomatoes", "max_train": 64, "max_eval": 48,
    ...              "max_test": 48, "max_length": 32},
    ...     "student": {"kind": "truncate", "num_layers": 1},
    ...     "search_space": {"temperature": {"low": 1.0, "high": 4.0}, "epochs": 1},
    ...     "metrics": {"latency_repeats": 1},
    ...     "keep": {"onnx": False},
    ...     "n_trials": 1,
    ... })
    >>> study = kdsearch.Study.create(spec, storage=f"sqlite:///{tmp}/kd.db",
    ...                               artifacts=f"{tmp}/art")
    >>> study.run().status
    'completed'
    >>> [row["state"] for row in study.leaderboard()]
    ['COMPLETE']
    >>> model, tokenizer = kdsearch.load_student(study.checkpoint(f"{tmp}/best"))
    """

    def __init__(
        self, name: str, storage: str = DEFAULT_STORAGE, artifacts: str | Path = DEFAULT_ARTIFACTS
    ) -> None:
        from kdsearch.search import tables
        from kdsearch.search.storage import make_engine, prepare_schema

        self.name, self.storage, self.artifacts = name, storage, str(artifacts)
        self._engine = make_engine(storage)
        prepare_schema(self._engine, upgrade=False)
        if tables.get(self._engine, name) is None:
            raise ConfigError(f"no study named {name!r} in {storage}")

    @classmethod
    def create(
        cls,
        spec: StudySpec | Mapping[str, Any] | str | Path,
        storage: str = DEFAULT_STORAGE,
        artifacts: str | Path = DEFAULT_ARTIFACTS,
    ) -> Study:
        """Queue a new study for ``spec`` (a :class:`StudySpec`, a dict or a spec file); run
        it with :meth:`run` here, or with ``kdsearch worker`` processes elsewhere."""
        from kdsearch.search.runner import create_study

        name = create_study(_model(StudySpec, spec, "spec"), storage)
        return cls(name, storage, artifacts)

    @property
    def spec(self) -> StudySpec:
        return StudySpec.model_validate(self._run().spec)

    @property
    def status(self) -> str:
        """``queued``, ``running``, ``completed``, ``failed`` or ``cancelled``."""
        return self._run().status

    def run(self, workers: int = 1) -> Study:
        """Run the study's remaining trials in this process (``workers`` > 1: that many
        worker processes) until its budget is spent; returns the study."""
        from kdsearch.search.runner import run_study

        run_study(self.spec, self.storage, self.artifacts, workers=workers, study_name=self.name)
        return self

    def leaderboard(
        self, sort: str | None = None, descending: bool | None = None
    ) -> list[dict[str, Any]]:
        """One row per trial: ``number``, ``state``, ``params``, ``metrics``, ``pareto``,
        ``feasible``, and ``test`` / ``confirmed`` once the study has ended. ``sort``: a
        metric name (best first by the metric's direction unless ``descending`` is given)."""
        from kdsearch.search.leaderboard import best_first, leaderboard

        if descending is None:
            descending = best_first(sort)
        return leaderboard(
            self._optuna, sort=sort, descending=descending, final=self._run().results
        )

    def checkpoint(self, dest: str | Path, trial: int | None = None) -> Path:
        """Unpack the recommended trial's student (or ``trial``'s) into the new folder
        ``dest`` and return it; :func:`load_student` loads it, ``kdsearch predict`` uses it."""
        from kdsearch.distill.predict import checkpoint_folder
        from kdsearch.search.artifacts import make_artifact_store
        from kdsearch.search.checkpoints import find_checkpoint

        out = Path(dest)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ConfigError(f"dest: {out} exists and is not an empty folder")
        if out.exists():
            out.rmdir()
        found = find_checkpoint(self._engine, self._run(), self._optuna.get_trials(), trial)
        store = make_artifact_store(self.artifacts)
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "checkpoint.tar.gz"
            with store.open_reader(found.artifact["artifact_id"]) as src, archive.open("wb") as f:
                shutil.copyfileobj(src, f)
            out.parent.mkdir(parents=True, exist_ok=True)
            with checkpoint_folder(archive) as folder:  # the same safe unpacking as predict
                shutil.copytree(folder, out)
        return out

    def _run(self) -> Any:
        from kdsearch.search import tables

        run = tables.get(self._engine, self.name)
        assert run is not None
        return run

    @cached_property
    def _optuna(self) -> Any:
        """The Optuna study, on one storage (and connection pool) for this object's life."""
        import optuna

        from kdsearch.search.storage import make_storage

        return optuna.load_study(
            study_name=self.name, storage=make_storage(self.storage, self._engine)
        )

    def __repr__(self) -> str:
        return f"Study({self.name!r}, storage={self.storage!r})"
