"""What the tabular KD benchmark says about two settings: TPE's random start-up count, and
the pruning rules' knobs.

Seeds start at 1000, apart from ``compare.py``'s (0..29): the settings are read off runs the
headline comparison does not use, so the comparison is not a re-run of the selection. It is
still the same table (one task, one pair): a setting that wins here is evidence, not a law.

1. **TPE start-up.** TPE with a fixed number of random start-up trials (2 .. 20) against
   random sampling, each run 100 trials; read at 20, 50 and 100 trials (a run's first
   ``b`` trials are what a ``b``-trial study with that start-up count would have done).
   kdsearch's rule (``search.samplers.tpe_startup_trials``) is marked at each budget. The
   rule (a fifth of the budget, between 2 and 5) was chosen from this table.
2. **Pruning knobs.** ``dominance`` and ``pareto_rank`` at their defaults and at stricter
   and looser settings, behind TPE and random, 100 trials each. At 50 trials: compute
   saved and final HV against the unpruned run (the goal: >= 30 % saved at >= 98 % of the
   HV). At the same compute: the pruned run's HV once it has spent what the unpruned run
   spent on 50 trials (pruning buys more trials for the same seconds).

    .venv/bin/python bench/kdtable/sweep.py --write bench/RESULTS.md   # 30 seeds, 5 min
    .venv/bin/python bench/kdtable/sweep.py --quick                     # 3 seeds, smoke
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench.*, this checkout first
from bench._env import bench_env, quiet_logging

bench_env("MPLBACKEND", "OPTUNA_VERBOSITY")
import numpy as np  # noqa: E402
import optuna  # noqa: E402

from bench._report import add_output_args, header, loadavg, machine, publish, versions  # noqa: E402
from bench.kdtable.compare import (  # noqa: E402
    TABLE,
    Variant,
    hv_at_cost,
    mean_ci,
    ratio_ci,
    run_one,
)
from bench.kdtable.compare import _init as init_worker  # noqa: E402
from bench.kdtable.simulator import Table  # noqa: E402
from kdsearch.search.samplers import tpe_startup_trials  # noqa: E402
from kdsearch.search.spec import PrunerSpec  # noqa: E402

SECTION = "## Tabular KD benchmark: TPE start-up and pruning settings (bench/kdtable/sweep.py)"
SEED0 = 1000
TRIALS = 100
BUDGETS = (20, 50, 100)
STARTUPS = (2, 3, 4, 5, 10, 20)
AT = 50  # the budget the pruning goal is read at
GOAL_SAVED, GOAL_HV = 0.30, 0.98
# (rule, knobs): stricter (prunes more) and looser (prunes less) settings; knobs left out
# take PrunerSpec's defaults, and rows at the defaults are marked in the report
KNOBS: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = (
    ("dominance", (("min_dominating", 2),)),
    ("dominance", (("min_dominating", 1),)),
    ("dominance", (("min_dominating", 3),)),
    ("dominance", (("min_dominating", 4),)),
    ("dominance", (("warmup_progress", 0.5),)),
    ("dominance", (("min_trials", 8), ("min_dominating", 3))),
    ("pareto_rank", (("percentile", 25.0),)),
    ("pareto_rank", (("percentile", 50.0),)),
    ("pareto_rank", (("percentile", 75.0),)),
    ("pareto_rank", (("percentile", 90.0),)),
    ("pareto_rank", (("warmup_progress", 0.5),)),
    ("pareto_rank", (("min_trials", 8), ("percentile", 75.0))),
)
PRUNED_SAMPLERS = ("tpe", "random")


def knob_text(knobs: Sequence[tuple[str, Any]]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in knobs)


def is_default(knobs: Sequence[tuple[str, Any]]) -> bool:
    defaults = PrunerSpec()
    return all(getattr(defaults, k) == v for k, v in knobs)


def variants() -> list[Variant]:
    out = [Variant("random", "random", "none"), Variant("tpe", "tpe", "none")]
    out += [Variant(f"tpe start-up {k}", "tpe", "none", fixed_startup=k) for k in STARTUPS]
    out += [
        Variant(f"{s} + {rule} ({knob_text(knobs)})", s, rule, knobs=knobs)
        for s in PRUNED_SAMPLERS
        for rule, knobs in KNOBS
    ]
    return out


def startup_rows(by: dict[str, list[dict[str, Any]]]) -> list[str]:
    out = [
        "| start-up trials | "
        + " | ".join(f"HV at {b} (vs random)" for b in BUDGETS)
        + " | trials to random's 50-trial HV |",
        "| --- |" + " --- |" * (len(BUDGETS) + 1),
    ]
    rand = {b: mean_ci([r["hv"][b - 1] for r in by["random"]]) for b in BUDGETS}
    target = rand[AT][0]
    out.append(
        "| random sampling | "
        + " | ".join(f"{rand[b][0]:.4f} [{rand[b][1]:.4f}, {rand[b][2]:.4f}]" for b in BUDGETS)
        + f" | {AT} |"
    )
    for k in STARTUPS:
        rs = by[f"tpe start-up {k}"]
        cells = []
        for b in BUDGETS:
            m, lo, hi = mean_ci([r["hv"][b - 1] for r in rs])
            rule = " (rule)" if tpe_startup_trials(b) == k else ""
            cells.append(f"{m:.4f} [{lo:.4f}, {hi:.4f}] ({m / rand[b][0]:.3f}){rule}")
        curve = [np.mean([r["hv"][i] for r in rs]) for i in range(TRIALS)]
        reach = next((i + 1 for i, m in enumerate(curve) if m >= target), None)
        out.append(f"| {k} | " + " | ".join(cells) + f" | {reach or f'> {TRIALS}'} |")
    return out


def pruning_rows(by: dict[str, list[dict[str, Any]]]) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(0)
    out = [
        f"| sampler | rule (knobs) | pruned at {AT} | compute saved at {AT} | "
        f"HV at {AT} vs unpruned | HV at the unpruned {AT}-trial compute | goal |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    met = []
    for s in PRUNED_SAMPLERS:
        base = by[s]
        base_cost = [r["cost"][AT - 1] for r in base]
        base_hv = [r["hv"][AT - 1] for r in base]
        budget = float(np.mean(base_cost))
        for rule, knobs in KNOBS:
            label = f"{s} + {rule} ({knob_text(knobs)})"
            rs = by[label]
            cost = ratio_ci([r["cost"][AT - 1] for r in rs], base_cost, rng)
            hv = ratio_ci([r["hv"][AT - 1] for r in rs], base_hv, rng)
            same = ratio_ci([hv_at_cost(r, budget) for r in rs], base_hv, rng)
            pruned = np.mean([r["pruned_at"][AT - 1] for r in rs]) / AT
            ok = 1 - cost[0] >= GOAL_SAVED and hv[0] >= GOAL_HV
            if ok:
                met.append(f"{label}: {100 * (1 - cost[0]):.0f}% saved at {100 * hv[0]:.1f}%")
            out.append(
                f"| {s} | {rule} ({knob_text(knobs)}){' **default**' if is_default(knobs) else ''}"
                f" | {100 * pruned:.0f}% | "
                f"{100 * (1 - cost[0]):.1f}% [{100 * (1 - cost[2]):.1f}, {100 * (1 - cost[1]):.1f}]"
                f" | {100 * hv[0]:.1f}% [{100 * hv[1]:.1f}, {100 * hv[2]:.1f}] | "
                f"{100 * same[0]:.1f}% [{100 * same[1]:.1f}, {100 * same[2]:.1f}] | "
                f"{'met' if ok else 'missed'} |"
            )
    return out, met


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", type=Path, default=TABLE)
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--jobs", type=int, default=max(1, (mp.cpu_count() or 1)))
    ap.add_argument("--quick", action="store_true", help="3 seeds; writes nothing")
    add_output_args(ap, "dump the runs as JSON")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.write = 3, None
    if not args.table.is_file():
        raise SystemExit(f"{args.table} is missing: make it with bench/kdtable/make_table.py")
    quiet_logging()
    load, started = loadavg(), time.perf_counter()
    Table.load(args.table)  # fail here, not in a pool process
    jobs = [(v, SEED0 + i, TRIALS) for v in variants() for i in range(args.seeds)]
    runs: list[dict[str, Any]] = []
    with mp.get_context("spawn").Pool(args.jobs, init_worker, (str(args.table),)) as pool:
        for i, run in enumerate(pool.imap_unordered(run_one, jobs), 1):
            runs.append(run)
            if i % 60 == 0 or i == len(jobs):
                print(f"[{i}/{len(jobs)}] {time.perf_counter() - started:.0f} s", flush=True)
    by: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by.setdefault(r["label"], []).append(r)
    lines = header(
        SECTION,
        machine(
            f", {args.jobs} simulation processes", *versions(optuna, np), load=(load, loadavg())
        ),
        f"{(time.perf_counter() - started) / 60:.1f} min",
    )
    prune_table, met = pruning_rows(by)
    body = [
        *lines,
        "",
        f"Seeds {SEED0}..{SEED0 + args.seeds - 1} ({args.seeds} per variant), {TRIALS} "
        "simulated trials per run on `bench/kdtable/table.json.gz`; brackets are 95 % intervals "
        "over seeds. The headline comparison (`compare.py`) uses seeds 0..29, so these "
        "settings were read off runs it does not contain; the table is the same.",
        "",
        "**TPE start-up trials** (HV of (accuracy, conf_sigma), ratio to random sampling at the "
        "same budget; `(rule)` marks `tpe_startup_trials(budget)`):",
        "",
        *startup_rows(by),
        "",
        f"**Pruning knobs** (read at {AT} trials; goal: >= {100 * GOAL_SAVED:.0f}% of the "
        f"compute saved at >= {100 * GOAL_HV:.0f}% of the unpruned HV): "
        + ("met by " + "; ".join(met) if met else "no setting meets it")
        + ".",
        "",
        *prune_table,
    ]
    publish(SECTION, "\n".join(body) + "\n", args.write, args.json, {"runs": runs})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
