"""Search efficiency: TPE against random, and what multi-objective pruning saves.

Runs real kdsearch studies (``search.runner.run_study``, one in-process worker, a SQLite file
per study in a temporary folder) with tiny, fast trials: builtin rotten_tomatoes capped to a
few hundred snippets, the builtin MiniLM teacher fine-tuned once (cached under
``$KDSEARCH_HOME``), a 2-layer truncated student, one epoch per trial with ~4 evaluations.
The space is temperature (1..8, log), alpha (0..1) and lr (1e-5..5e-4, log); the objectives
are accuracy (max) and conf_sigma (min).

- **Samplers.** For each seed, a TPE study and a random study with the same budget (no
  pruning). The hypervolume of (accuracy, conf_sigma) is computed after every trial with
  Optuna's own ``compute_hypervolume`` in loss space ``(-accuracy, conf_sigma)`` against the
  reference point accuracy 0.5, conf_sigma 0.5 (points worse than it contribute 0; the largest
  possible value is 0.5 * 0.5 = 0.25).
- **Pruning.** For each seed, the TPE study again with the dominance pruner on (``pruner:
  {name: median, min_trials: 3, min_dominating: 2}``); "off" is the TPE study above. Reported:
  the share of training steps saved (``search.pruning.estimate_saved_fraction``, max_steps =
  the optimiser steps of a full trial), the study's wall-clock seconds, and the final
  hypervolume (pruned trials have no final values, so that is what the saving costs).

    .venv/bin/python bench/search_efficiency.py --write bench/RESULTS.md
    .venv/bin/python bench/search_efficiency.py --quick          # smoke check, ~1-2 min

Runtime on the 2-core CPU (AMD EPYC, mostly idle): the defaults (12 trials, seeds 0 1 2: 9
studies, 108 trials, ~7 s per full trial) took 13.4 minutes; ``--quick`` about 2 minutes. The
first run also fine-tunes the teacher (about 1-3 minutes), cached afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.*, this checkout first
from bench._env import bench_env, quiet_logging

bench_env("TOKENIZERS_PARALLELISM", "MPLBACKEND")
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from optuna._hypervolume import compute_hypervolume  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402

from bench._report import add_output_args, loadavg, machine, publish, versions  # noqa: E402
from bench._search_report import SECTION, section, summarise  # noqa: E402
from bench._trials import TINY_TEACHER  # noqa: E402
from kdsearch.distill.config import DataConfig  # noqa: E402
from kdsearch.distill.data import load_dataset  # noqa: E402
from kdsearch.search.intermediates import intermediate_vectors  # noqa: E402
from kdsearch.search.pruning import estimate_saved_fraction  # noqa: E402
from kdsearch.search.runner import run_study  # noqa: E402
from kdsearch.search.spec import StudySpec  # noqa: E402

# Loss space: minimise (-accuracy, conf_sigma); reference = accuracy 0.5, conf_sigma 0.5.
REFERENCE = np.array([-0.5, 0.5])
PRUNER_ON = {"name": "dominance", "min_trials": 3, "min_dominating": 2}
PRUNER_OFF = {"name": "none"}


# --------------------------------------------------------------------------- study specs


def data_config(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "source": "builtin:rotten_tomatoes",
        "max_train": args.max_train,
        "max_eval": args.max_eval,
        "max_length": args.max_length,
    }


def steps_per_trial(args: argparse.Namespace, n_train: int) -> int:
    """Optimiser steps of a full trial, as ``distill.train`` counts them (EvalEvent.step)."""
    return max(1, math.ceil(args.epochs * math.ceil(n_train / args.batch_size)))


def make_spec(
    args: argparse.Namespace, sampler: str, prune: bool, seed: int, eval_every: int
) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": f"bench-{sampler}-{'prune' if prune else 'noprune'}-s{seed}",
            "data": data_config(args),
            "teacher": TINY_TEACHER,  # fine-tuned 3 epochs, lr 1.5e-4, batch 16
            "student": {"kind": "truncate", "num_layers": args.student_layers},
            "training": {"eval_every_steps": eval_every, "device": args.device},
            "search_space": {
                "temperature": {"low": 1.0, "high": 8.0, "log": True},
                "alpha": {"low": 0.0, "high": 1.0},
                "lr": {"low": 1e-5, "high": 5e-4, "log": True},
                "epochs": args.epochs,
                "batch_size": args.batch_size,
            },
            "objectives": [
                {"metric": "accuracy", "direction": "maximize"},
                {"metric": "conf_sigma", "direction": "minimize"},
            ],
            "n_trials": args.n_trials,
            "sampler": sampler,
            "pruner": PRUNER_ON if prune else PRUNER_OFF,
            "seed": seed,
        }
    )


# --------------------------------------------------------------------------- measures


def hypervolume(points: list[tuple[float, float]]) -> float:
    """Hypervolume of (accuracy, conf_sigma) points against (0.5, 0.5); higher is better."""
    loss = np.array(
        [[-a, s] for a, s in points if math.isfinite(a) and math.isfinite(s)], dtype=float
    ).reshape(-1, 2)
    loss = loss[np.all(loss <= REFERENCE, axis=1)]
    if len(loss) == 0:
        return 0.0
    return float(compute_hypervolume(loss, REFERENCE))


def hv_curve(trials: list[FrozenTrial]) -> list[float]:
    """Hypervolume of the COMPLETE trials among the first k (by number), for every k."""
    points: list[tuple[float, float]] = []
    curve = []
    for t in sorted(trials, key=lambda t: t.number):
        if t.state == TrialState.COMPLETE and t.values is not None:
            points.append((float(t.values[0]), float(t.values[1])))
        curve.append(hypervolume(points))
    return curve


def trial_record(t: FrozenTrial) -> dict[str, Any]:
    steps = intermediate_vectors(t)
    return {
        "number": t.number,
        "state": t.state.name,
        "params": dict(t.params),
        "values": list(t.values) if t.values is not None else None,
        "last_step": max(steps) if steps else 0,
        "evaluations": len(steps),
        "duration_s": t.duration.total_seconds() if t.duration is not None else None,
        "error": t.user_attrs.get("error"),
        "teacher_accuracy": t.user_attrs.get("metric:teacher_accuracy"),
    }


def run_one(
    args: argparse.Namespace,
    workdir: Path,
    sampler: str,
    prune: bool,
    seed: int,
    eval_every: int,
    max_steps: int,
) -> dict[str, Any]:
    spec = make_spec(args, sampler, prune, seed, eval_every)
    label = f"{sampler}/{'prune' if prune else 'no-prune'} seed {seed}"
    folder = workdir / f"{sampler}-{'prune' if prune else 'noprune'}-s{seed}"
    folder.mkdir(parents=True)
    url = f"sqlite:///{folder / 'study.db'}"
    seen: list[tuple[float, float]] = []

    def on_trial(_name: str, t: FrozenTrial) -> None:
        if t.state == TrialState.COMPLETE and t.values is not None:
            seen.append((float(t.values[0]), float(t.values[1])))
            what = f"acc {t.values[0]:.3f} sigma {t.values[1]:.4f}"
        elif t.state == TrialState.PRUNED:
            steps = intermediate_vectors(t)
            what = f"pruned at step {max(steps) if steps else 0}/{max_steps}"
        else:
            what = f"{t.state.name}: {t.user_attrs.get('error')}"
        secs = t.duration.total_seconds() if t.duration is not None else float("nan")
        print(
            f"  [{label}] trial {t.number:>2} {t.state.name:<8} {what}  "
            f"({secs:.1f} s)  HV {hypervolume(seen):.4f}",
            flush=True,
        )

    print(f"study {label}: {args.n_trials} trials", flush=True)
    started = time.perf_counter()
    name = run_study(spec, url, str(folder / "artifacts"), workers=1, on_trial=on_trial)
    wall = time.perf_counter() - started
    study = optuna.load_study(study_name=name, storage=url)
    trials = study.get_trials(deepcopy=False)
    curve = hv_curve(trials)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    complete_steps = {r["last_step"] for r in map(trial_record, trials) if r["state"] == "COMPLETE"}
    if complete_steps and complete_steps != {max_steps}:
        print(
            f"  warning: COMPLETE trials ended at steps {sorted(complete_steps)}, "
            f"expected {max_steps}",
            flush=True,
        )
    record = {
        "sampler": sampler,
        "pruning": prune,
        "seed": seed,
        "wall_s": wall,
        "trial_s": sum(t.duration.total_seconds() for t in trials if t.duration is not None),
        "n_trials": len(trials),
        "n_complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "n_pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "n_failed": sum(t.state == TrialState.FAIL for t in trials),
        "saved_fraction": estimate_saved_fraction(finished, max_steps),
        "steps_run": sum(
            max_steps if t.state == TrialState.COMPLETE else trial_record(t)["last_step"]
            for t in finished
        ),
        "max_steps": max_steps,
        "hv_curve": curve,
        "hv_final": curve[-1] if curve else 0.0,
        "hv_half": curve[max(1, args.n_trials // 2) - 1] if curve else 0.0,
        "pareto_size": len(study.best_trials),
        "trials": [trial_record(t) for t in trials],
    }
    print(
        f"  [{label}] done in {wall:.0f} s: {record['n_complete']} complete, "
        f"{record['n_pruned']} pruned, {record['n_failed']} failed; HV "
        f"{record['hv_final']:.4f}; steps saved {record['saved_fraction']:.1%}",
        flush=True,
    )
    return record


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n-trials", type=int, default=12, help="budget of every study")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--quick", action="store_true", help="smoke check: 4 trials, seed 0")
    p.add_argument("--max-train", type=int, default=256)
    p.add_argument("--max-eval", type=int, default=128)
    p.add_argument("--max-length", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--epochs", type=float, default=1.0, help="per trial (fixed)")
    p.add_argument("--evals", type=int, default=4, help="evaluations per trial (about)")
    p.add_argument("--student-layers", type=int, default=2)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--no-pruning", action="store_true", help="skip the pruning studies (samplers only)"
    )
    add_output_args(p, "dump per-study records and the summary here")
    args = p.parse_args(argv)
    if args.quick:
        args.n_trials, args.seeds = 4, [args.seeds[0]]
    if args.n_trials < 1:
        p.error("--n-trials must be >= 1")
    return args


def prepare_teacher(args: argparse.Namespace, eval_every: int) -> tuple[float, str]:
    """Fine-tune (or load) the teacher and cache its logits, so no study pays for it."""
    from kdsearch.distill.context import prepare_context
    from kdsearch.search.objective import build_run_config

    started = time.perf_counter()
    spec = make_spec(args, "tpe", False, 0, eval_every)
    ctx = prepare_context(build_run_config(spec, {}))
    logits = ctx.teacher_outputs.eval_logits
    labels = torch.tensor([ex.label for ex in ctx.splits.eval])
    acc = float((logits.argmax(-1) == labels).float().mean())
    del ctx
    return time.perf_counter() - started, f"{acc:.3f}"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    quiet_logging()

    t0, load_at_start = time.perf_counter(), loadavg()
    splits = load_dataset(DataConfig.model_validate(data_config(args)))
    n_train, n_eval = len(splits.train), len(splits.eval)
    max_steps = steps_per_trial(args, n_train)
    eval_every = max(1, max_steps // max(1, args.evals))
    print(
        f"{n_train} train / {n_eval} eval examples; {max_steps} steps per trial, evaluated "
        f"every {eval_every}",
        flush=True,
    )
    teacher_s, teacher_acc = prepare_teacher(args, eval_every)
    print(f"teacher ready in {teacher_s:.0f} s (validation accuracy {teacher_acc})", flush=True)

    plan = [("tpe", False), ("random", False)]
    if not args.no_pruning:
        plan.append(("tpe", True))
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kd_search_bench_") as tmp:
        for seed in args.seeds:  # interleaved, so load drift hits every contender alike
            for sampler, prune in plan:
                records.append(
                    run_one(args, Path(tmp), sampler, prune, seed, eval_every, max_steps)
                )
    total = time.perf_counter() - t0
    threads = f" (torch threads {torch.get_num_threads()})"
    meta = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(
            threads, *versions(torch, transformers, optuna), load=(load_at_start, loadavg())
        ),
        "argv": sys.argv if argv is None else [sys.argv[0], *argv],
        "total_s": total,
        "teacher_s": teacher_s,
        "teacher_accuracy": teacher_acc,
        "n_train": n_train,
        "n_eval": n_eval,
        "max_steps": max_steps,
        "eval_every": eval_every,
    }
    body = section(records, args, meta, PRUNER_ON)
    payload = {
        "meta": meta,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "summary": summarise(records),
        "studies": records,
    }
    print()
    publish(SECTION, body, args.write, args.json, payload)
    print(f"total {total / 60:.1f} min")


if __name__ == "__main__":
    main()
