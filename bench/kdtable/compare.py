"""Race kdsearch's samplers and pruners on the tabular KD benchmark, over many seeds.

Every variant (sampler x pruning rule) runs ``--trials`` simulated trials per seed against
``table.json.gz`` (``simulator.simulate``: real Optuna samplers and kdsearch's pruning code,
answers and costs from the table). Per run, after every trial: the hypervolume of the
COMPLETE trials so far, in loss space ``(-accuracy, conf_sigma)`` against the reference
accuracy 0.5, conf_sigma 0.5 (the largest possible value is 0.25), and the compute spent
(the table's wall seconds). Bands are 95 % intervals of the mean over seeds (Student t).

Goals (issue 13): the best sampler reaches random's mean 50-trial hypervolume in <= 20
trials; pruning saves >= 30 % of the compute at >= 98 % of the unpruned final hypervolume.

    .venv/bin/python bench/kdtable/compare.py --write bench/RESULTS.md     # 30 seeds
    .venv/bin/python bench/kdtable/compare.py --quick                       # 3 seeds, smoke

Each finished run is appended to ``runs.partial.jsonl`` next to the table (keyed by variant,
seed, trial count and the table's ``made`` stamp), so an interrupted comparison resumes where
it stopped; the file is deleted once the results are written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing as mp
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench.*, this checkout first
from bench._env import bench_env, quiet_logging

bench_env("MPLBACKEND", "OPTUNA_VERBOSITY")
import numpy as np  # noqa: E402
import optuna  # noqa: E402
from optuna._hypervolume import compute_hypervolume  # noqa: E402
from scipy import stats  # noqa: E402

from bench._report import add_output_args, header, loadavg, machine, publish, versions  # noqa: E402
from bench.kdtable.grid import study_spec  # noqa: E402
from bench.kdtable.simulator import SimTrial, Table, simulate  # noqa: E402
from kdsearch.search.spec import StudySpec  # noqa: E402

HERE = Path(__file__).resolve().parent
TABLE = HERE / "table.json.gz"
PLOT = HERE / "hv.png"
RUNS = HERE / "runs.partial.jsonl"
SECTION = "## Tabular KD benchmark: samplers and pruning rules (bench/kdtable)"
REFERENCE = np.array([-0.5, 0.5])
SAMPLERS = ("random", "tpe", "nsga2", "gp")
RULES = ("none", "dominance", "pareto_rank")
# the start-up rule the issue proposed (a fifth of the budget up to 10), against kdsearch's
# (up to 5, measured by sweep.py on other seeds)
OLD_TPE = "tpe (start-up 10)"


@dataclass(frozen=True)
class Variant:
    label: str
    sampler: str
    rule: str
    fixed_startup: int | None = None  # TPE's random start-up trials, instead of the rule's
    knobs: tuple[tuple[str, Any], ...] = ()  # PrunerSpec fields besides the name


def variants() -> list[Variant]:
    out = [Variant(f"{s}" if r == "none" else f"{s} + {r}", s, r) for s in SAMPLERS for r in RULES]
    out.append(Variant(OLD_TPE, "tpe", "none", fixed_startup=10))
    return out


# --------------------------------------------------------------------------- one run


def hypervolume(points: Sequence[Sequence[float]]) -> float:
    loss = np.array([[-a, s] for a, s in points], dtype=float).reshape(-1, 2)
    loss = loss[np.all(np.isfinite(loss) & (loss <= REFERENCE), axis=1)]
    return float(compute_hypervolume(loss, REFERENCE)) if len(loss) else 0.0


def curves(trials: Sequence[SimTrial]) -> tuple[list[float], list[float]]:
    """Hypervolume and cumulative seconds after each trial."""
    points: list[tuple[float, ...]] = []
    hv, cost, spent = [], [], 0.0
    for t in trials:
        if t.state == "COMPLETE" and t.values is not None:
            points.append(t.values)
        spent += t.seconds
        hv.append(hypervolume(points))
        cost.append(spent)
    return hv, cost


_TABLE: Table | None = None


def _init(path: str) -> None:
    global _TABLE
    import torch

    torch.set_num_threads(1)
    quiet_logging()
    _TABLE = Table.load(Path(path))


def run_one(job: tuple[Variant, int, int]) -> dict[str, Any]:
    variant, seed, n_trials = job
    assert _TABLE is not None
    spec = StudySpec.model_validate(
        study_spec(
            sampler=variant.sampler,
            pruner={"name": variant.rule, **dict(variant.knobs)},
            seed=seed,
            n_trials=n_trials,
        )
    )
    sampler = None
    if variant.fixed_startup is not None:
        sampler = optuna.samplers.TPESampler(
            seed=seed, constant_liar=True, n_startup_trials=variant.fixed_startup
        )
    started = time.perf_counter()
    trials = simulate(_TABLE, spec, n_trials, sampler=sampler)
    hv, cost = curves(trials)
    return {
        "label": variant.label,
        "seed": seed,
        "n_trials": n_trials,
        "hv": hv,
        "cost": cost,
        "pruned": sum(t.state == "PRUNED" for t in trials),
        "pruned_at": np.cumsum([t.state == "PRUNED" for t in trials]).tolist(),
        "seconds": time.perf_counter() - started,
    }


def run_key(label: str, seed: int, n_trials: int, table_made: str) -> str:
    return f"{table_made}|{label}|{seed}|{n_trials}"


def load_runs(path: Path, table_made: str, n_trials: int) -> dict[str, dict[str, Any]]:
    """Runs an earlier, interrupted comparison finished on this same table and trial count."""
    if not path.is_file():
        return {}
    runs = {}
    for line in path.read_text().splitlines():
        try:
            run = json.loads(line)
        except json.JSONDecodeError:  # a line cut off by the interruption
            continue
        key = run_key(run["label"], run["seed"], n_trials, table_made)
        if run.get("key") == key:
            runs[key] = run
    return runs


# --------------------------------------------------------------------------- statistics


def mean_ci(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and its 95 % Student-t interval over seeds."""
    x = np.asarray(values, dtype=float)
    m = float(x.mean())
    if len(x) < 2:
        return m, m, m
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return m, m - half, m + half


def ratio_ci(
    a: Sequence[float], b: Sequence[float], rng: np.random.Generator
) -> tuple[float, float, float]:
    """mean(a) / mean(b) with a 95 % bootstrap interval (seeds resampled independently)."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    boot = [
        rng.choice(x, len(x)).mean() / max(rng.choice(y, len(y)).mean(), 1e-12) for _ in range(2000)
    ]
    return float(x.mean() / max(y.mean(), 1e-12)), *np.percentile(boot, [2.5, 97.5]).tolist()


def hv_at_cost(run: dict[str, Any], budget: float) -> float:
    """The run's hypervolume once ``budget`` seconds are spent (trials done by then)."""
    done = [h for h, c in zip(run["hv"], run["cost"], strict=True) if c <= budget]
    return done[-1] if done else 0.0


def summarise(runs: list[dict[str, Any]], n_trials: int, table: Table) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    by: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by.setdefault(r["label"], []).append(r)
    best_points = [
        (row["final"]["accuracy"], row["final"]["conf_sigma"])
        for row in table.rows.values()
        if row["final"].get("conf_sigma") is not None
    ]
    grid_hv = hypervolume(best_points)
    curves_by = {
        label: [mean_ci([r["hv"][k] for r in rs]) for k in range(n_trials)]
        for label, rs in by.items()
    }
    random_final = curves_by["random"][-1][0]
    reach = {}
    for label, curve in curves_by.items():
        k = next((i + 1 for i, (m, _, _) in enumerate(curve) if m >= random_final), None)
        reach[label] = k
    pruning = []
    for s in SAMPLERS:
        base = by[s]
        for rule in RULES[1:]:
            pr = by[f"{s} + {rule}"]
            cost = ratio_ci([r["cost"][-1] for r in pr], [r["cost"][-1] for r in base], rng)
            hv = ratio_ci([r["hv"][-1] for r in pr], [r["hv"][-1] for r in base], rng)
            # at the same compute: the pruned run's HV when it has spent what it spent,
            # against the unpruned run's HV at that same budget
            budget = float(np.mean([r["cost"][-1] for r in pr]))
            same = ratio_ci(
                [hv_at_cost(r, budget) for r in pr], [hv_at_cost(r, budget) for r in base], rng
            )
            pruning.append(
                {
                    "sampler": s,
                    "rule": rule,
                    "saved": 1 - cost[0],
                    "saved_ci": (1 - cost[2], 1 - cost[1]),
                    "hv_ratio": hv,
                    "hv_same_compute": same,
                    "pruned": float(np.mean([r["pruned"] for r in pr])) / n_trials,
                }
            )
    max_cost = float(np.median([r["cost"][-1] for r in by["random"]]))
    grid = np.linspace(0, max_cost, 60)
    cost_curves = {
        label: [mean_ci([hv_at_cost(r, c) for r in rs]) for c in grid] for label, rs in by.items()
    }
    return {
        "n_seeds": len(by["random"]),
        "n_trials": n_trials,
        "grid_hv": grid_hv,
        "curves": curves_by,
        "reach": reach,
        "random_final": random_final,
        "pruning": pruning,
        "cost_grid": grid.tolist(),
        "cost_curves": cost_curves,
        "mean_cost": {label: mean_ci([r["cost"][-1] for r in rs]) for label, rs in by.items()},
        "sim_seconds": {
            label: float(np.mean([r["seconds"] for r in rs])) for label, rs in by.items()
        },
    }


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", type=Path, default=TABLE)
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--jobs", type=int, default=max(1, (mp.cpu_count() or 1)))
    ap.add_argument("--plot", type=Path, default=PLOT)
    ap.add_argument("--runs", type=Path, default=RUNS, help="finished runs, kept to resume")
    ap.add_argument("--quick", action="store_true", help="3 seeds, 30 trials; writes nothing")
    add_output_args(ap, "dump the summary as JSON")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.trials, args.write, args.plot = 3, 30, None, None
    if not args.table.is_file():
        raise SystemExit(
            f"{args.table} is missing: make it with bench/kdtable/make_table.py "
            "(about 3 h of compute; --shard i/n splits it over processes)"
        )
    quiet_logging()
    load = loadavg()
    started = time.perf_counter()
    table = Table.load(args.table)
    made = str(table.meta.get("made", ""))
    runs_path = None if args.quick else args.runs
    done = load_runs(runs_path, made, args.trials) if runs_path else {}
    jobs = [
        (v, seed, args.trials)
        for v in variants()
        for seed in range(args.seeds)
        if run_key(v.label, seed, args.trials, made) not in done
    ]
    # the slow GP runs first, so the pool's tail is short
    jobs.sort(key=lambda j: j[0].sampler != "gp")
    wanted = {
        run_key(v.label, seed, args.trials, made) for v in variants() for seed in range(args.seeds)
    }
    runs = [r for k, r in done.items() if k in wanted]
    resumed = len(runs)
    if runs:
        print(f"resuming: {len(runs)} runs from {runs_path}, {len(jobs)} to go", flush=True)
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(runs_path.open("a")) if runs_path else None
        pool = stack.enter_context(
            mp.get_context("spawn").Pool(args.jobs, _init, (str(args.table),))
        )
        for i, run in enumerate(pool.imap_unordered(run_one, jobs), 1):
            runs.append(run)
            if sink:
                run["key"] = run_key(run["label"], run["seed"], args.trials, made)
                sink.write(json.dumps(run) + "\n")
                sink.flush()
            if i % 30 == 0 or i == len(jobs):
                print(f"[{i}/{len(jobs)}] {time.perf_counter() - started:.0f} s", flush=True)
    summary = summarise(runs, args.trials, table)
    runtime = time.perf_counter() - started
    from bench.kdtable.report import plot, section

    if args.plot:
        plot(summary, args.plot)
    lines = header(
        SECTION,
        machine(
            f", {args.jobs} simulation processes",
            *versions(optuna, np),
            load=(load, loadavg()),
        ),
        f"{runtime / 60:.1f} min"
        + (f" (and {resumed} runs resumed from an interrupted comparison)" if resumed else ""),
    )
    body = section(lines, summary, table, args.plot)
    publish(SECTION, body, args.write, args.json, {"summary": summary})
    if runs_path and args.write:
        runs_path.unlink(missing_ok=True)  # the results are in; a new comparison starts afresh
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
