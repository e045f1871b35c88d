"""Whole studies on a real SQLite file, one in-process worker."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from kdsearch.search import tables
from kdsearch.search.leaderboard import recommended_trial
from kdsearch.search.pruning import estimate_saved_fraction
from kdsearch.search.runner import create_study, run_study
from kdsearch.search.storage import make_storage

from .proc_helpers import popen_cli, run_cli, worker_args
from .search_helpers import ready_engine, tiny_spec


def _load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=make_storage(url))


def test_study_runs_its_budget_and_stores_everything(tiny_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'kd.db'}"
    art = tmp_path / "artifacts"
    spec = tiny_spec(n_trials=3, keep={"policy": "top_k", "k": 1})
    name = run_study(spec, url, str(art))
    engine = ready_engine(url)
    run = tables.get(engine, name)
    assert run is not None and run.status == "completed" and run.claimed == 3
    study = _load(url, name)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert study.metric_names == ["accuracy", "conf_sigma"]
    for t in trials:
        assert t.values == [t.user_attrs["metric:accuracy"], t.user_attrs["metric:conf_sigma"]]
        assert 1.0 <= t.params["temperature"] <= 4.0
        assert t.user_attrs["config"]["distill"]["temperature"] == t.params["temperature"]
        assert t.user_attrs["metric:params"] > 0
        assert "kd_intermediate" in t.user_attrs  # multi-objective intermediate values
    # artifacts: every trial's plots, and only the kept (top-1) checkpoint
    plots = tables.list_artifacts(engine, name, kind="plot")
    assert len(plots) == 6
    for a in plots:
        assert (art / a["artifact_id"]).read_bytes()[:4] == b"\x89PNG"
    ckpts = tables.list_artifacts(engine, name, kind="checkpoint")
    all_ckpts = tables.list_artifacts(engine, name, kind="checkpoint", include_deleted=True)
    assert len(all_ckpts) == 3 and len(ckpts) == 1
    best = recommended_trial(trials)
    assert best is not None and ckpts[0]["trial_number"] == best.number
    on_disk = {p.name for p in art.iterdir()}
    assert ckpts[0]["artifact_id"] in on_disk
    assert all(a["artifact_id"] not in on_disk for a in all_ckpts if a["deleted"])


def test_constraints_mark_infeasible_trials(tiny_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'kd.db'}"
    spec = tiny_spec(n_trials=2, constraints=[{"metric": "accuracy", "min": 1.01}])
    name = run_study(spec, url, str(tmp_path / "a"))
    study = _load(url, name)
    for t in study.get_trials():
        assert t.constraints == pytest.approx({"accuracy": 1.01 - t.user_attrs["metric:accuracy"]})
    assert study.best_trials == []  # nothing feasible
    assert recommended_trial(study.get_trials()) is None
    # the unconstrained front keeps its checkpoints so the user still has a choice
    engine = ready_engine(url)
    assert len(tables.list_artifacts(engine, name, kind="checkpoint")) >= 1


def test_median_pruner_stops_a_bad_trial(tiny_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'kd.db'}"
    spec = tiny_spec(
        n_trials=3,
        objectives=[{"metric": "kl_teacher_student"}],
        pruner={"name": "median"},
        training={"eval_every_steps": 2},
        search_space={"lr": {"low": 1e-9, "high": 1e-3, "log": True}, "alpha": 0.0, "epochs": 1},
    )
    name = create_study(spec, url)
    study = _load(url, name)
    for lr in (3e-4, 2e-4, 1e-9):  # two good trials, then one that cannot learn
        study.enqueue_trial({"lr": lr})
    run_study(spec, url, str(tmp_path / "a"), study_name=name)
    trials = study.get_trials()
    assert [t.state for t in trials] == [
        TrialState.COMPLETE,
        TrialState.COMPLETE,
        TrialState.PRUNED,
    ]
    assert max(trials[2].intermediate_values) < 10  # stopped before its 10 steps
    assert estimate_saved_fraction(trials, max_steps=10) > 0
    run = tables.get(ready_engine(url), name)
    assert run is not None and run.status == "completed"


def test_broken_teacher_fails_the_study_fast(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kd.db'}"
    spec = tiny_spec(teacher={"model": str(tmp_path / "missing-teacher"), "finetune": False})
    name = run_study(spec, url, str(tmp_path / "a"))
    run = tables.get(ready_engine(url), name)
    assert run is not None and run.status == "failed"
    assert run.error is not None and "missing-teacher does not exist" in run.error
    assert _load(url, name).get_trials() == []  # no trial was even started


def test_failing_trials_fail_alone_then_the_study(tiny_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'kd.db'}"
    # a valid but absurd learning rate: training diverges at its second step, so every such
    # trial fails at run time (the spec cannot know it)
    spec = tiny_spec(
        n_trials=6,
        max_consecutive_failures=2,
        search_space={"lr": {"choices": [1e-4, 1e30]}, "epochs": 0.5},
    )
    name = create_study(spec, url)
    study = _load(url, name)
    for lr in (1e30, 1e-4, 1e30, 1e30):
        study.enqueue_trial({"lr": lr})
    run_study(spec, url, str(tmp_path / "a"), study_name=name)
    trials = study.get_trials()
    assert [t.state for t in trials] == [
        TrialState.FAIL,
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.FAIL,
    ]
    assert "the loss became nan at step 2" in trials[0].user_attrs["error"]
    run = tables.get(ready_engine(url), name)
    assert run is not None and run.status == "failed"
    assert run.error is not None and "2 trials failed in a row" in run.error
    assert "lower train.lr" in run.error


def test_study_run_cli_prints_the_leaderboard(tiny_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import yaml

    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(tiny_spec(n_trials=2).model_dump(mode="json")))
    url = f"sqlite:///{tmp_path / 'kd.db'}"
    proc = run_cli(
        "study", "run", "--spec", str(spec_path), "--database-url", url,
        "--artifact-dir", str(tmp_path / "a"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("trial 0: COMPLETE accuracy=")
    assert any(ln.startswith("study kd-") and ": completed (complete 2)" in ln for ln in lines)
    assert any(ln.startswith("recommended: trial ") for ln in lines)
    bad = run_cli(
        "study", "run", "--spec", str(spec_path), "--database-url", "mysql://root@localhost/x",
        timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--database-url: unsupported database URL 'mysql'" in bad.stderr


def test_example_study_spec_is_valid() -> None:
    from kdsearch.distill.configfile import load_model
    from kdsearch.search.spec import StudySpec

    spec = load_model(StudySpec, Path(__file__).parents[1] / "examples" / "study_quick.yaml")
    assert spec.n_trials == 8 and spec.constraints[0].max == 0.08
    assert spec.parsed_space()["epochs"].step == 1


def test_sigterm_finishes_the_current_trial_then_exits(tiny_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import signal
    import time

    url = f"sqlite:///{tmp_path / 'kd.db'}"
    name = create_study(tiny_spec(n_trials=3, search_space={"epochs": 1, "lr": 1e-4}), url)
    study = _load(url, name)
    worker = popen_cli(*worker_args(url, tmp_path / "a"))
    deadline = time.monotonic() + 300
    while not any(t.state == TrialState.RUNNING for t in study.get_trials()):
        assert time.monotonic() < deadline and worker.poll() is None, "no trial started"
        time.sleep(0.3)
    worker.send_signal(signal.SIGTERM)
    out = worker.communicate(timeout=300)[0]
    assert worker.returncode == 0, out
    assert out.strip().splitlines()[-1] == "worker done: 1 trials"
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE]  # finished, not abandoned
    run = tables.get(ready_engine(url), name)
    assert run is not None and run.claimed == 1 and run.status == "running"  # left for others
