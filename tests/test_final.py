"""The study's end: bootstrap intervals, end-of-study jobs, test scores, confirmed winners."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from kdsearch.distill.metric_registry import computed_names
from kdsearch.distill.metrics import conf_sigma
from kdsearch.search import jobs, tables
from kdsearch.search.bootstrap import bootstrap_metrics
from kdsearch.search.final import RESULTS_ATTR, _confirmed_key
from kdsearch.search.leaderboard import leaderboard, pareto_front, recommended_trial
from kdsearch.search.runner import run_study
from kdsearch.search.storage import make_storage

from .proc_helpers import run_cli
from .search_helpers import ready_engine, tiny_spec

# --------------------------------------------------------------------------- bootstrap


def _draw(rng: np.random.Generator, n: int, p_correct: float, sd: float) -> dict[str, Any]:
    """Synthetic test rows: the teacher is always right; the student is right with
    probability ``p_correct``; p_t(r) - p_s(r) ~ N(0, sd), independent of correctness, so
    the true accuracy is ``p_correct`` and the true conf_sigma is ``sd``."""
    y = rng.integers(0, 2, size=n)
    right = rng.random(n) < p_correct
    pred = np.where(right, y, 1 - y)
    t_ref = np.full(n, 0.7)
    s_ref = t_ref - rng.normal(0.0, sd, size=n)
    return {"y": y, "t_pred": y, "t_ref": t_ref, "s_pred": pred, "s_ref": s_ref}


def test_bootstrap_interval_covers_the_true_value_90_to_99_percent_of_200_draws() -> None:
    rng = np.random.default_rng(20261201)
    true_acc, true_sigma = 0.8, 0.1
    covered = {"accuracy": 0, "conf_sigma": 0}
    widths = []
    for draw in range(200):
        d = _draw(rng, 400, true_acc, true_sigma)
        ci = bootstrap_metrics(
            d["y"], d["t_pred"], d["t_ref"], [d["s_pred"]], [d["s_ref"]], resamples=1000, seed=draw
        )
        covered["accuracy"] += ci["accuracy"].low <= true_acc <= ci["accuracy"].high
        covered["conf_sigma"] += ci["conf_sigma"].low <= true_sigma <= ci["conf_sigma"].high
        widths.append(ci["accuracy"].high - ci["accuracy"].low)
    for name, hits in covered.items():
        assert 180 <= hits <= 198, (name, hits)  # 90%..99% of 200
    # and the interval is not trivially wide: about 2 * 1.96 * sqrt(0.8 * 0.2 / 400) = 0.078
    assert 0.06 < float(np.median(widths)) < 0.10


def test_bootstrap_statistic_is_the_metric_definition() -> None:
    """With a single resample that is the identity, the statistics equal distill.metrics."""
    rng = np.random.default_rng(3)
    d = _draw(rng, 300, 0.75, 0.08)
    d["t_pred"] = np.where(rng.random(300) < 0.9, d["y"], 1 - d["y"])  # a fallible teacher
    # binary probabilities whose argmax is the prediction: p(r=0) above 0.5 means class 0
    s_ref = np.where(d["s_pred"] == 0, 0.75, 0.25) + rng.normal(0, 0.05, 300)
    t_ref = np.where(d["t_pred"] == 0, 0.8, 0.2)
    probs_s = np.stack([s_ref, 1 - s_ref], axis=1)
    probs_t = np.stack([t_ref, 1 - t_ref], axis=1)
    expected = conf_sigma(probs_t, probs_s, d["y"], reference_class=0).value
    assert expected is not None
    # many resamples: their mean is close to the statistic on all rows
    ci = bootstrap_metrics(d["y"], d["t_pred"], t_ref, [d["s_pred"]], [s_ref], resamples=4000)
    mid = (ci["conf_sigma"].low + ci["conf_sigma"].high) / 2
    assert abs(mid - expected) < 0.01
    acc = float(np.mean(d["s_pred"] == d["y"]))
    assert ci["accuracy"].low < acc < ci["accuracy"].high
    # two identical seeds give the interval of one
    twice = bootstrap_metrics(
        d["y"], d["t_pred"], t_ref, [d["s_pred"]] * 2, [s_ref] * 2, resamples=4000
    )
    assert twice["accuracy"] == ci["accuracy"]
    with pytest.raises(ValueError, match="at least one seed"):
        bootstrap_metrics(d["y"], d["t_pred"], t_ref, [], [])
    # a teacher that is never right leaves conf_sigma undefined on every resample: no
    # interval for it (an untrained teacher did this), accuracy's is still there
    wrong = 1 - d["y"]
    none = bootstrap_metrics(d["y"], wrong, t_ref, [d["s_pred"]], [s_ref], resamples=200)
    assert (
        "conf_sigma" not in none
        and none["accuracy"]
        == bootstrap_metrics(d["y"], d["t_pred"], t_ref, [d["s_pred"]], [s_ref], resamples=200)[
            "accuracy"
        ]
    )


def test_multilabel_bootstrap_is_exact_match_and_the_macro_per_label_sigma() -> None:
    """Multi-label rows: the statistics are distill.multilabel_metrics' exact match and
    macro conf_sigma; a label with no both-right rows is skipped, not averaged in as 0."""
    from kdsearch.distill.multilabel_metrics import per_label_conf_sigma

    rng = np.random.default_rng(11)
    n = 400
    y = rng.integers(0, 2, size=(n, 3))
    y[:, 2] = 1  # label 2 always applies ...
    t_p = np.where(y == 1, 0.8, 0.2) + rng.normal(0, 0.05, (n, 3))
    s_p = t_p - rng.normal(0, [0.05, 0.15, 0.1], (n, 3))
    s_p[:, 2] = 0.1  # ... and the student never predicts it: label 2's sigma is undefined
    t_pred, s_pred = (t_p >= 0.5).astype(int), (s_p >= 0.5).astype(int)
    point = per_label_conf_sigma(t_p, s_p, y.astype(bool))
    assert point.per_label[2] is None and point.macro is not None
    ci = bootstrap_metrics(y, t_pred, t_p, [s_pred], [s_p], resamples=3000)
    mid = (ci["conf_sigma"].low + ci["conf_sigma"].high) / 2
    assert abs(mid - point.macro) < 0.01
    assert ci["accuracy"].high == 0.0  # label 2 is always wrong: no exact match anywhere
    # exact match, not the per-label hit rate: with label 2 predicted too, some rows match
    s_pred[:, 2] = 1
    exact = float(np.mean(np.all(s_pred == y, axis=1)))
    ci = bootstrap_metrics(y, t_pred, t_p, [s_pred], [s_p], resamples=3000)
    assert ci["accuracy"].low < exact < ci["accuracy"].high
    assert ci["accuracy"].high < float(np.mean(s_pred == y))
    with pytest.raises(ValueError, match="shape"):
        bootstrap_metrics(y, t_pred, t_p, [s_pred[:, :2]], [s_p[:, :2]])


# --------------------------------------------------------------------------- jobs


def test_jobs_are_claimed_once_retried_when_stale_and_failed_after_three_tries(
    tmp_path: Path,
) -> None:
    engine = ready_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    wanted = [("confirm", 2, 1), ("confirm", 2, 2), ("test", 2, 0)]
    assert jobs.plan(engine, "s", wanted) == 3
    assert jobs.plan(engine, "s", wanted) == 0  # idempotent: one row per job
    a = jobs.claim(engine, "s", "worker-a", stale_after_s=60)
    b = jobs.claim(engine, "s", "worker-b", stale_after_s=60)
    assert a is not None and b is not None and a.id != b.id
    assert (a.kind, a.trial_number, a.seed, a.attempts) == ("confirm", 2, 1, 1)
    assert jobs.finish(engine, a.id, "worker-b", result={"x": 1}) is False  # not b's job
    assert jobs.finish(engine, a.id, "worker-a", result={"x": 1}) is True
    jobs.release(engine, b.id, "worker-b")  # stopped: pending again, the try not counted
    assert jobs.progress(engine, "s") == {
        "pending": 2,
        "running": 0,
        "done": 1,
        "failed": 0,
        "total": 3,
    }
    c = jobs.claim(engine, "s", "worker-c", stale_after_s=60)
    assert c is not None and c.id == b.id and c.attempts == 1
    # worker-c dies: its heartbeat goes stale, and the job is taken again, until 3 tries
    old = tables.now() - dt.timedelta(seconds=600)
    for attempt in (2, 3):
        with engine.begin() as conn:
            conn.execute(
                tables.jobs.update().where(tables.jobs.c.id == c.id).values(heartbeat_at=old)
            )
        again = jobs.claim(engine, "s", f"worker-{attempt}", stale_after_s=60)
        assert again is not None and again.id == c.id and again.attempts == attempt
    with engine.begin() as conn:
        conn.execute(tables.jobs.update().where(tables.jobs.c.id == c.id).values(heartbeat_at=old))
    last = jobs.claim(engine, "s", "worker-x", stale_after_s=60)
    assert last is not None and last.kind == "test"  # the thrice-dead job was failed
    failed = [j for j in jobs.list_jobs(engine, "s") if j.state == "failed"]
    assert [j.id for j in failed] == [c.id]
    assert failed[0].error == "its worker stopped 3 times while running it"
    assert jobs.claim(engine, "s", "worker-y", stale_after_s=60) is None


def test_a_heartbeat_keeps_a_running_job_from_going_stale(tmp_path: Path) -> None:
    engine = ready_engine(f"sqlite:///{tmp_path / 'beat.db'}")
    jobs.plan(engine, "s", [("test", 0, 0)])
    job = jobs.claim(engine, "s", "w", stale_after_s=60)
    assert job is not None
    with engine.connect() as conn:
        first = conn.execute(sa.select(tables.jobs.c.heartbeat_at)).scalar_one()
    with jobs.Heartbeat(engine, job.id, "w", interval_s=0.05):
        import time

        time.sleep(0.4)
    with engine.connect() as conn:
        later = conn.execute(sa.select(tables.jobs.c.heartbeat_at)).scalar_one()
    assert later > first


# --------------------------------------------------------------------------- whole studies


def _load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=make_storage(url))


def test_study_end_scores_winners_on_test_and_confirms_with_fresh_seeds(  # type: ignore[no-untyped-def]
    tiny_ctx, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'kd.db'}"
    art = tmp_path / "artifacts"
    spec = tiny_spec(n_trials=3, seed=4, confirm={"seeds": 2, "top_k": 1})
    name = run_study(spec, url, str(art))
    engine = ready_engine(url)
    run = tables.get(engine, name)
    assert run is not None and run.status == "completed", run
    # re-runs never count against the budget: exactly n_trials trials, all claimed slots
    study = _load(url, name)
    trials = study.get_trials()
    assert len(trials) == 3 and run.claimed == 3
    assert all(t.state == TrialState.COMPLETE for t in trials)
    final = run.results
    assert final is not None
    assert study.user_attrs[RESULTS_ATTR] == final  # optuna-dashboard shows it
    original = recommended_trial(trials)
    assert original is not None and final["recommended_before_confirmation"] == original.number
    front = sorted(t.number for t in pareto_front(trials, study.directions))
    # every Pareto trial and the recommended one scored on the 120 test rows, all metrics
    assert sorted(int(n) for n in final["test"]) == sorted({original.number, *front})
    assert final["n_test_rows"] == len(tiny_ctx.splits.test) > 100
    for metrics in final["test"].values():
        assert set(metrics) == set(computed_names())
        assert 0.0 <= metrics["accuracy"] <= 1.0
    # confirmation: the recommended trial and one other front trial, seeds 5 and 6
    all_jobs = jobs.list_jobs(engine, name)
    assert {j.state for j in all_jobs} == {"done"}
    confirmed_numbers = {j.trial_number for j in all_jobs if j.kind == "confirm"}
    assert original.number in confirmed_numbers
    assert len(confirmed_numbers) == min(2, len({original.number, *front}))
    assert set(final["confirmed"]) == {str(n) for n in confirmed_numbers}
    for key, entry in final["confirmed"].items():
        assert entry["seeds"] == [5, 6]
        runs = [j.result for j in all_jobs if j.kind == "confirm" and str(j.trial_number) == key]
        accs = [r["metrics"]["accuracy"] for r in runs if r]
        assert entry["mean"]["accuracy"] == pytest.approx(np.mean(accs), abs=1e-6)
        assert entry["std"]["accuracy"] == pytest.approx(np.std(accs, ddof=1), abs=1e-6)
        assert entry["test_mean"]["conf_sigma"] > 0
        ci = entry["ci"]
        assert ci["accuracy"]["low"] <= entry["test_mean"]["accuracy"] <= ci["accuracy"]["high"]
        assert ci["conf_sigma"]["level"] == 0.95
        # a fresh seed trains another model: the re-runs are not copies of the trial
        trial = trials[int(key)]
        assert any(
            r["metrics"]["kl_teacher_student"] != trial.user_attrs["metric:kl_teacher_student"]
            for r in runs
            if r
        )
    # the recommendation is THE RULE on the confirmed validation means
    best = min(
        (int(k) for k in final["confirmed"]),
        key=lambda n: _confirmed_key(n, final["confirmed"][str(n)]["mean"]),
    )
    assert final["recommended"] == best and final["recommended_by"] == "confirmed validation means"
    assert recommended_trial(trials, final).number == best  # type: ignore[union-attr]
    # the leaderboard carries test columns for exactly the scored trials, sortable
    rows = leaderboard(study, sort="test:accuracy", final=final)
    with_test = [r["number"] for r in rows if r["test"] is not None]
    assert sorted(with_test) == sorted(int(n) for n in final["test"])
    accs = [r["test"]["accuracy"] for r in rows[: len(with_test)]]
    assert accs == sorted(accs, reverse=True)
    # the served checkpoint is the confirmed winner's, and it is kept
    kept = {a["trial_number"] for a in tables.list_artifacts(engine, name, kind="checkpoint")}
    assert best in kept
    # kdsearch study show prints test beside validation and the confirmation
    out = run_cli("study", "show", name, "--database-url", url).stdout
    assert "test:accuracy" in out and "test:conf_sigma" in out
    assert f"recommended: trial {best} (chosen on confirmed validation means)" in out
    assert "confirmed over 2 fresh seeds: validation accuracy" in out
    assert "[95% CI" in out


# --------------------------------------------------------------------------- no leak


def _corpus_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    import csv

    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def _visible(trial: Any, timing: set[str]) -> dict[str, Any]:
    return {
        k: v for k, v in trial.user_attrs.items() if k.startswith("metric:") and k not in timing
    }


def test_no_test_row_reaches_the_teacher_training_transfer_or_any_trial(
    tmp_path: Path,
) -> None:
    """Two datasets that differ only in the test rows' texts train the same teacher, give
    the same training logits and the same trial values, parameters and intermediate values:
    nothing the search sees depends on a test row. Only the end-of-study test scores move."""
    import torch

    from kdsearch.distill._sources import _load_rotten_tomatoes
    from kdsearch.distill.config import DataConfig
    from kdsearch.distill.context import prepare_context
    from kdsearch.distill.data import load_dataset
    from kdsearch.search.objective import build_run_config

    texts, ids, names = _load_rotten_tomatoes()
    seen: set[str] = set()
    rows: list[tuple[str, str]] = []
    for text, y in zip(texts, ids, strict=True):
        if text not in seen and len(rows) < 240:
            seen.add(text)
            rows.append((text, names[y]))
    a_csv = _corpus_csv(tmp_path / "a.csv", rows)
    data = {"test_fraction": 0.25, "max_train": None, "max_eval": None, "max_test": None}
    split_a = load_dataset(DataConfig(source=f"csv:{a_csv}", **data))  # type: ignore[arg-type]
    held = {e.text for e in split_a.test}
    assert len(held) == 60
    b_rows = [
        (f"an unrelated held-out sentence, number {i}" if t in held else t, y)
        for i, (t, y) in enumerate(rows)
    ]
    b_csv = _corpus_csv(tmp_path / "b.csv", b_rows)
    split_b = load_dataset(DataConfig(source=f"csv:{b_csv}", **data))  # type: ignore[arg-type]
    assert split_b.train == split_a.train and split_b.eval == split_a.eval
    assert not ({e.text for e in split_b.test} & held)

    def study(csv_path: Path, tag: str) -> tuple[Any, Any, Any]:
        spec = tiny_spec(
            data={"source": f"csv:{csv_path}", **data, "max_length": 48, "augment": {"copies": 1}},
            teacher={"model": "builtin:minilm-l6", "recipe": {"epochs": 1, "batch_size": 16}},
            n_trials=2,
        )
        url = f"sqlite:///{tmp_path / f'{tag}.db'}"
        name = run_study(spec, url, str(tmp_path / f"art-{tag}"))
        run = tables.get(ready_engine(url), name)
        assert run is not None and run.status == "completed", run
        ctx = prepare_context(build_run_config(spec, {}))  # the cached teacher and logits
        return _load(url, name).get_trials(), run.results, ctx

    trials_a, final_a, ctx_a = study(a_csv, "a")
    trials_b, final_b, ctx_b = study(b_csv, "b")
    # the teacher was fine-tuned twice (its cache key holds the data) into the same weights
    sa_, sb_ = ctx_a.teacher.module.state_dict(), ctx_b.teacher.module.state_dict()
    assert sa_.keys() == sb_.keys() and all(torch.equal(sa_[k], sb_[k]) for k in sa_)
    assert torch.equal(ctx_a.teacher_outputs.train_logits, ctx_b.teacher_outputs.train_logits)
    rows_a, logits_a = ctx_a.training_rows(1)
    rows_b, logits_b = ctx_b.training_rows(1)
    assert rows_a.input_ids == rows_b.input_ids and torch.equal(logits_a, logits_b)
    # every value the sampler and pruner see is the same
    timing = {"metric:latency_ms", "metric:speedup_vs_teacher", "train_seconds"}
    for ta, tb in zip(trials_a, trials_b, strict=True):
        assert ta.params == tb.params and ta.values == tb.values
        assert ta.intermediate_values == tb.intermediate_values
        assert _visible(ta, timing) == _visible(tb, timing) != {}
    # the end-of-study scores are where the test rows show up
    assert final_a["test"] != final_b["test"]
    # transfer text never holds a test row, even when the transfer file does
    transfer = _corpus_csv(tmp_path / "transfer.csv", [(t, "") for t in [*held, "fresh text"]])
    spec = tiny_spec(
        data={"source": f"csv:{a_csv}", **data, "max_length": 48, "transfer": f"csv:{transfer}"},
        teacher={"model": "builtin:minilm-l6", "recipe": {"epochs": 1, "batch_size": 16}},
    )
    ctx = prepare_context(build_run_config(spec, {}))
    assert ctx.transfer_texts == ["fresh text"]
    assert not ({t for t in ctx._augmented_copies(2)[1].texts()} & held)
