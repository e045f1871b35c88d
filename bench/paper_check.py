"""The paper check: TinyBERT's default task-distillation recipe against a tuned kdsearch study.

Vengertsev & Sherman (arXiv:2401.11365) found that tuning TinyBERT's stage epochs and learning
rates restored confidence preservation (sigma <= kappa) with little accuracy loss; they never
varied the temperature or a hard-label weight. On the offline defaults (builtin rotten_tomatoes,
2,000 / 500 snippets, the builtin MiniLM-L6 teacher fine-tuned once and cached under
``$KDSEARCH_HOME``, truncated 2- and 3-layer students, uniform mapping) this runs, per size:

- the **default recipe** (two stages, T = 1, alpha = 0, soft CE, batch 32, lrs 5e-5 / 3e-5,
  TinyBERT's 10 + 3 epochs times ``--epoch-scale``), once per ``--seeds`` entry;
- a **tuned** study (TPE, no pruning, ``--trials`` trials) over T, alpha, stage lrs and stage
  epochs (at most the default's), objectives accuracy and conf_sigma, constraint
  conf_sigma <= kappa (default: the default recipe's mean sigma); its
  ``search.leaderboard.recommended_trial`` is re-run with the other seeds.

    .venv/bin/python bench/paper_check.py --threads 1 --write bench/RESULTS.md
    .venv/bin/python bench/paper_check.py --quick    # smoke check, a few minutes

Runtime on the shared 2-core CPU with ``--threads 1`` (1-min load 3-8 from other jobs): the
defaults took 35 min (2 x (3 default runs + 6 trials + 2 re-runs), about 1-2 min a run; not
measured on an idle machine); ``--quick`` about 3 min. ``--threads 1`` matters on a busy
CPU: torch's default 2 threads ran a step 3x slower there. The first run also fine-tunes the
teacher (minutes), cached afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.*, this checkout first
from bench._env import bench_env, quiet_logging

bench_env("TOKENIZERS_PARALLELISM", "MPLBACKEND")
import optuna  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402

from bench._paper_report import (  # noqa: E402
    SECTION,
    Record,
    num,
    rec_params,
    section,
    short_params,
    stats,
)
from bench._report import add_output_args, loadavg, machine, publish, versions  # noqa: E402
from distill.config import RunConfig  # noqa: E402
from distill.context import RunContext, prepare_context  # noqa: E402
from distill.run import run_distillation  # noqa: E402
from search.leaderboard import is_feasible, recommended_trial, trial_metrics  # noqa: E402
from search.objective import build_run_config  # noqa: E402
from search.pruning import intermediate_vectors  # noqa: E402
from search.runner import create_study  # noqa: E402
from search.spec import StudySpec  # noqa: E402
from search.worker import Worker, WorkerOptions, default_threads  # noqa: E402

# TinyBERT task distillation (GLUE): intermediate stage 10 epochs at lr 5e-5, prediction stage
# 3 epochs at lr 3e-5, batch 32, T = 1, soft cross-entropy only.
TINYBERT_EPOCHS = (10.0, 3.0)
TINYBERT_LRS = (5e-5, 3e-5)
METRICS = "accuracy conf_sigma ece_student ece_teacher ece_gap kl_teacher_student conf_bias"
METRICS += " teacher_accuracy"


# --------------------------------------------------------------------------- recipes


def default_params(args: argparse.Namespace) -> dict[str, Any]:
    """The TinyBERT default recipe as search-space values (all fixed)."""
    e1, e2 = (round(e * args.epoch_scale, 4) for e in TINYBERT_EPOCHS)
    fixed = {"mode": "two_stage", "temperature": 1.0, "alpha": 0.0, "soft_loss": "soft_ce"}
    fixed |= {"layer_mapping": "uniform", "batch_size": 32, "stage1_epochs": e1}
    return fixed | {"stage1_lr": TINYBERT_LRS[0], "stage2_epochs": e2, "stage2_lr": TINYBERT_LRS[1]}


def tuned_space(args: argparse.Namespace) -> dict[str, Any]:
    d = default_params(args)
    low = args.min_epoch_share
    return {
        **d,
        "temperature": {"low": 1.0, "high": 8.0, "log": True},
        "alpha": {"low": 0.0, "high": 1.0},
        "stage1_epochs": {"low": round(low * d["stage1_epochs"], 4), "high": d["stage1_epochs"]},
        "stage2_epochs": {"low": round(low * d["stage2_epochs"], 4), "high": d["stage2_epochs"]},
        "stage1_lr": {"low": 1e-5, "high": 2e-4, "log": True},
        "stage2_lr": {"low": 1e-5, "high": 2e-4, "log": True},
    }


def make_spec(args: argparse.Namespace, layers: int, kappa: float = 1.0) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": f"paper-check-{layers}l",
            "data": {"source": "builtin:rotten_tomatoes", "max_train": args.max_train},
            "teacher": {"model": "builtin:minilm-l6"},  # the project's default recipe
            "student": {"kind": "truncate", "num_layers": layers},
            # evaluate only at the end of each stage: no pruning, so nothing needs more
            "training": {"eval_every_steps": 10**9, "device": "cpu"},
            "search_space": tuned_space(args),
            "objectives": [{"metric": "accuracy"}, {"metric": "conf_sigma"}],
            "constraints": [{"metric": "conf_sigma", "max": kappa}],
            "n_trials": args.trials,
            "sampler": "tpe",
            "pruner": {"name": "none"},
            "keep": {"policy": "top_k", "k": 1},
            "seed": args.seeds[0],
        }
    )


def record(metrics: dict[str, Any], steps: int, seconds: float, seed: int) -> Record:
    out = {k: metrics.get(k) for k in METRICS.split()} | {"steps": steps, "s": seconds}
    e_s, e_t = out["ece_student"], out["ece_teacher"]  # signed: the project's ece_gap is |.|
    diff = e_s - e_t if e_s is not None and e_t is not None else None
    return out | {"seed": seed, "ece_diff": diff}


def run_seeds(cfg: RunConfig, ctx: RunContext, seeds: list[int], label: str) -> list[Record]:
    out = []
    for seed in seeds:
        run_cfg = cfg.model_copy(deep=True)
        run_cfg.train.seed = seed
        r = run_distillation(run_cfg, ctx=ctx)
        out.append(record(r.metrics, r.steps, r.seconds, seed))
        what = f"acc {out[-1]['accuracy']:.3f} sigma {num(out[-1]['conf_sigma'])}"
        print(f"  [{label} seed {seed}] {what} steps {r.steps} ({r.seconds:.0f} s)", flush=True)
    return out


def run_size(args: argparse.Namespace, ctx: RunContext, layers: int, tmp: Path) -> Record:
    print(f"{layers}-layer student: default recipe, seeds {args.seeds}", flush=True)
    cfg = build_run_config(make_spec(args, layers), default_params(args))
    default = run_seeds(cfg, ctx, args.seeds, "default")
    sigma = stats(default, "conf_sigma")
    kappa = args.kappa if args.kappa is not None else round(sigma[0] if sigma else 1.0, 4)
    spec = make_spec(args, layers, kappa)
    print(f"{layers}-layer student: tuned study, {args.trials} trials, kappa {kappa}", flush=True)

    def on_trial(_name: str, t: FrozenTrial) -> None:
        m = trial_metrics(t)
        what = f"acc {m.get('accuracy', 0):.3f} sigma {num(m.get('conf_sigma'))}"
        what = what if t.state == TrialState.COMPLETE else f"{t.state.name} {t.user_attrs}"
        print(f"  [trial {t.number}] {what} {short_params(t.params)}", flush=True)

    url = f"sqlite:///{tmp / f'study-{layers}.db'}"
    started = time.perf_counter()
    # search.runner.run_study with one in-process worker, but with our torch thread count
    name = create_study(spec, url)
    opts = WorkerOptions(url, str(tmp / f"art-{layers}"), only_studies={name})
    opts = replace(opts, exit_when_idle=True, torch_threads=args.threads or default_threads(1))
    Worker(opts, on_trial=on_trial).run()
    study_s = time.perf_counter() - started
    trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    steps = [max(intermediate_vectors(t), default=0) for t in trials]
    rec, feasible = recommended_trial(trials), True
    if rec is None:  # nothing met sigma <= kappa: the same rule on copies without constraints
        feasible, rec = False, recommended_trial([unconstrained(t) for t in trials])
    tuned: list[Record] = []
    if rec is not None:
        rec_steps = max(intermediate_vectors(rec), default=0)
        rec_s = float(rec.user_attrs.get("train_seconds", 0.0))
        tuned.append(record(trial_metrics(rec), rec_steps, rec_s, spec.seed))
        others = [s for s in args.seeds if s != spec.seed] if args.rerun else []
        if others:
            cfg = RunConfig.model_validate(rec.user_attrs["config"])
            tuned += run_seeds(cfg, ctx, others, "tuned pick")
    return {
        "layers": layers,
        "kappa": kappa,
        "default": default,
        "tuned": tuned,
        "pick": rec,
        "feasible": feasible,
        "n_feasible": sum(t.state == TrialState.COMPLETE and is_feasible(t) for t in trials),
        "n_complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "study_steps": sum(steps),
        "study_s": study_s,
    }


def unconstrained(t: FrozenTrial) -> FrozenTrial:
    if t.state != TrialState.COMPLETE:
        return t
    p, d, u = t.params, t.distributions, t.user_attrs
    c = optuna.trial.create_trial(values=t.values, params=p, distributions=d, user_attrs=u)
    c.number = t.number
    return c


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 layers, 3 trials, 2 seeds, epochs/4")
    p.add_argument("--student-layers", type=int, nargs="+", default=[2, 3])
    p.add_argument("--trials", type=int, default=6, help="trials of each tuned study")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="default-recipe seeds")
    p.add_argument("--epoch-scale", type=float, default=0.1, help="x TinyBERT's 10 + 3 epochs")
    p.add_argument("--min-epoch-share", type=float, default=0.3, help="tuned epochs' low end")
    p.add_argument("--kappa", type=float, help="default: the default recipe's mean sigma")
    p.add_argument("--small-cost", type=float, default=0.02, help="a 'small' accuracy drop")
    p.add_argument("--max-train", type=int, default=2000)
    p.add_argument("--no-rerun", dest="rerun", action="store_false", help="pick: one seed")
    p.add_argument("--threads", type=int, help="torch threads (1 helps on a busy CPU)")
    add_output_args(p, "dump every run's metrics here")
    args = p.parse_args(argv)
    if args.quick:
        args.student_layers, args.trials, args.seeds = [2], 3, args.seeds[:2]
        args.epoch_scale, args.rerun = args.epoch_scale / 4, False
    if args.trials < 1 or not 0 < args.min_epoch_share <= 1:
        p.error("--trials must be >= 1 and --min-epoch-share in (0, 1]")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    quiet_logging()
    t0, load_at_start = time.perf_counter(), loadavg()
    torch.set_num_threads(args.threads or default_threads(1))
    ctx = prepare_context(build_run_config(make_spec(args, 2), default_params(args)))
    ctx_s = time.perf_counter() - t0
    print(f"teacher and logits ready in {ctx_s:.0f} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="kd_paper_check_") as tmp:
        results = [run_size(args, ctx, n, Path(tmp)) for n in args.student_layers]
    argv = sys.argv if argv is None else [sys.argv[0], *argv]
    threads = f" (torch threads {torch.get_num_threads()})"
    where = machine(
        threads, *versions(torch, transformers, optuna), load=(load_at_start, loadavg())
    )
    meta = {"machine": where, "argv": argv, "ctx_s": ctx_s}
    meta |= {"total_s": time.perf_counter() - t0, "n_train": len(ctx.splits.train)}
    meta |= {"n_eval": len(ctx.splits.eval), "date": dt.datetime.now().astimezone()}
    body = section(results, args, meta, default_params(args))
    picked = [  # the pick trial as text, last, in the --json dump
        {k: v for k, v in r.items() if k != "pick"} | {"pick": rec_params(r["pick"])}
        for r in results
    ]
    print()
    publish(SECTION, body, args.write, args.json, {"meta": meta, "results": picked})


if __name__ == "__main__":
    main()
