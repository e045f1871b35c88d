"""The tabular KD benchmark's simulator answers a study exactly as a real study runs.

A 2 x 2 grid (temperature x learning rate) of the tiny setting is evaluated with the table maker,
then a real kdsearch study (in-process worker, SQLite, the dominance pruner on) samples
only grid points. The simulator, given the same spec, must propose the same configs in the
same order, prune the same trials and return the same objective values.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from bench.kdtable.grid import config_key, grid_configs, nearest
from bench.kdtable.make_table import build
from bench.kdtable.simulator import Table, simulate
from kdsearch.search.runner import run_study

from .search_helpers import tiny_spec

AXES = {"temperature": (1.0, 4.0), "lr": (1e-5, 1e-3)}


def test_nearest_grid_point_uses_log_distance_on_log_axes() -> None:
    axes = {"temperature": (1.0, 2.0, 4.0), "alpha": (0.1, 0.5, 0.9)}
    assert nearest({"temperature": 1.45, "alpha": 0.29}, axes) == {"temperature": 2.0, "alpha": 0.1}
    assert nearest({"temperature": 1.40, "alpha": 0.31}, axes) == {"temperature": 1.0, "alpha": 0.5}
    assert config_key({"temperature": 2.0, "alpha": 0.5}, axes) == "temperature=2|alpha=0.5"


def test_simulator_reproduces_a_real_study_on_grid_points(tmp_path: Path) -> None:
    spec = tiny_spec(
        search_space={
            "temperature": {"choices": list(AXES["temperature"])},
            "lr": {"choices": list(AXES["lr"])},
            "alpha": 0.5,
            "epochs": 0.5,
            "batch_size": 32,
        },
        training={"eval_every_steps": 2},
        n_trials=6,
        sampler="random",
        pruner={"name": "dominance", "min_trials": 2, "min_dominating": 1},
        confirm={"seeds": 0},
        seed=5,  # its six trials: three complete, three pruned, every grid point tried
    )
    spec_dict = spec.model_dump(mode="json")
    rows = build(spec_dict, grid_configs(AXES), tmp_path / "t.json.gz.partial-0.jsonl", axes=AXES)
    assert len(rows) == 4
    assert all(len(r["curve"]) == 3 for r in rows.values())  # steps 2, 4, 5 of 5
    table = Table.from_dict(
        {"meta": {"axes": AXES, "spec": spec_dict}, "configs": list(rows.values())}
    )

    url = f"sqlite:///{tmp_path / 'kd.db'}"
    name = run_study(spec, url, str(tmp_path / "art"))
    real = optuna.load_study(study_name=name, storage=url).trials
    sim = simulate(table, spec)

    assert len(real) == len(sim) == 6
    assert len({s.key for s in sim}) == 4
    states = [s.state for s in sim]
    assert "PRUNED" in states and "COMPLETE" in states, states
    for r, s in zip(real, sim, strict=True):
        assert config_key(r.params, AXES) == s.key
        assert r.state.name == s.state
        if r.state == TrialState.COMPLETE:
            assert s.values == pytest.approx(r.values, abs=1e-5)
        else:  # pruned at the same evaluation
            assert r.state == TrialState.PRUNED
            last = max(int(k) for k in r.user_attrs["kd_intermediate"])
            row = table.rows[s.key]
            assert s.seconds == next(p["seconds"] for p in row["curve"] if p["step"] == last)


def test_compare_resumes_only_runs_of_the_same_table_and_trial_count(tmp_path: Path) -> None:
    import json

    from bench.kdtable.compare import load_runs, run_key

    path = tmp_path / "runs.partial.jsonl"
    runs = [
        {"label": "tpe", "seed": 0, "hv": [0.1], "key": run_key("tpe", 0, 50, "T1")},
        {"label": "gp", "seed": 1, "hv": [0.2], "key": run_key("gp", 1, 50, "T0")},  # old table
        {"label": "gp", "seed": 2, "hv": [0.3], "key": run_key("gp", 2, 30, "T1")},  # 30 trials
    ]
    text = "".join(json.dumps(r) + "\n" for r in runs) + '{"label": "random", "se'  # cut off
    path.write_text(text)
    loaded = load_runs(path, "T1", 50)
    assert list(loaded) == [run_key("tpe", 0, 50, "T1")]
    assert loaded[run_key("tpe", 0, 50, "T1")]["hv"] == [0.1]
    assert load_runs(tmp_path / "missing.jsonl", "T1", 50) == {}
