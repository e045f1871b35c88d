"""The winner's curse, measured: validation numbers of a study's pick against its held-out
test numbers and its fresh-seed confirmation.

On the offline defaults (builtin rotten_tomatoes; ``--max-train`` labelled and
``--max-eval`` validation rows; 1,000 held-out test rows; the builtin MiniLM-L6 teacher,
fine-tuned once and cached), ``--studies`` studies that differ only in their sampler seed
each run ``--trials`` trials of a 2-layer truncated student (TPE over temperature, alpha,
lr and epochs; objectives accuracy and conf_sigma, constraint conf_sigma <= ``--kappa``),
then the study's end: the pick and the Pareto front scored on the test rows, the pick and
up to ``--top-k`` other front trials re-run with ``--seeds`` fresh seeds each.

Per study it records the pick's validation accuracy and conf_sigma (what a study without a
test split would report), the same trial's test numbers, the confirmed means (validation
and test) with their bootstrap 95% intervals, and whether confirmation changed the pick.
The optimism of validation is ``validation - test`` for the pick, averaged over studies.

    .venv/bin/python bench/honest_numbers.py --write bench/RESULTS.md
    .venv/bin/python bench/honest_numbers.py --quick     # smoke run: 1 study of 4 trials
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.*, this checkout first
from bench._env import bench_env, quiet_logging

bench_env("TOKENIZERS_PARALLELISM", "MPLBACKEND")
import optuna  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from bench._report import add_output_args, header, loadavg, machine, publish, versions  # noqa: E402
from kdsearch.search import tables  # noqa: E402
from kdsearch.search.leaderboard import recommended_trial, trial_metrics  # noqa: E402
from kdsearch.search.runner import run_study  # noqa: E402
from kdsearch.search.spec import StudySpec  # noqa: E402
from kdsearch.search.storage import make_engine, make_storage  # noqa: E402

SECTION = "## Honest numbers: validation against held-out test (bench/honest_numbers.py)"


def make_spec(args: argparse.Namespace, seed: int) -> StudySpec:
    return StudySpec.model_validate(
        {
            "data": {
                "source": "builtin:rotten_tomatoes",
                "max_train": args.max_train,
                "max_eval": args.max_eval,
                "max_length": 64,
            },
            "teacher": {
                "model": "builtin:minilm-l6",
                "recipe": {"epochs": 1.5, "lr": 8e-05, "batch_size": 32, "seed": 0},
            },
            "student": {"kind": "truncate", "num_layers": 2},
            "search_space": {
                "temperature": {"low": 1.0, "high": 6.0, "log": True},
                "alpha": {"low": 0.0, "high": 1.0},
                "lr": {"low": 1e-4, "high": 4e-4, "log": True},
                "epochs": {"choices": [1, 2]},
            },
            "constraints": [{"metric": "conf_sigma", "max": args.kappa}],
            "n_trials": args.trials,
            "pruner": {"name": "none"},
            "keep": {"policy": "pareto", "onnx": False},
            "confirm": {"seeds": args.seeds, "top_k": args.top_k},
            "metrics": {"latency_repeats": 2},
            "seed": seed,
        }
    )


def one_study(args: argparse.Namespace, seed: int, root: Path) -> dict[str, Any]:
    url = f"sqlite:///{root / f'study{seed}.db'}"
    started = time.perf_counter()
    name = run_study(make_spec(args, seed), url, str(root / f"art{seed}"))
    seconds = time.perf_counter() - started
    engine = make_engine(url)
    run = tables.get(engine, name)
    assert run is not None and run.status == "completed", run
    final = run.results or {}
    trials = optuna.load_study(study_name=name, storage=make_storage(url, engine)).get_trials()
    first = recommended_trial(trials)
    chosen = recommended_trial(trials, final)
    assert first is not None and chosen is not None
    val = trial_metrics(first)
    test = final["test"][str(first.number)]
    confirmed = final["confirmed"].get(str(chosen.number), {})
    return {
        "seed": seed,
        "seconds": round(seconds, 1),
        "pick": first.number,
        "confirmed_pick": chosen.number,
        "val": {k: val[k] for k in ("accuracy", "conf_sigma")},
        "test": {k: test[k] for k in ("accuracy", "conf_sigma")},
        "confirmed_val": confirmed.get("mean", {}),
        "confirmed_test": confirmed.get("test_mean", {}),
        "confirmed_std": confirmed.get("test_std", {}),
        "ci": confirmed.get("ci", {}),
        "n_test_rows": final.get("n_test_rows"),
    }


def _f(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, float | int) else "–"


def section(args: argparse.Namespace, rows: list[dict[str, Any]], runtime: float) -> str:
    where = machine(
        f" ({torch.get_num_threads()} torch threads)", *versions(torch, transformers, optuna)
    )
    lines = header(SECTION, where, f"{runtime / 60:.1f} min")
    lines += [
        "",
        f"{len(rows)} studies (sampler seeds {', '.join(str(r['seed']) for r in rows)}) of "
        f"{args.trials} trials; {args.max_train} train / {args.max_eval} validation / "
        f"{rows[0]['n_test_rows']} test rows; constraint conf_sigma <= {args.kappa}; the pick "
        f"and up to {args.top_k} other Pareto trials confirmed with {args.seeds} fresh seeds "
        "each (the final pick is the rule on their confirmed validation means). 1-min load "
        f"average at the end: {loadavg() or 0:.2f}.",
        "",
        "| study | pick | val acc | test acc | val sigma | test sigma | confirmed pick | "
        "confirmed val acc | confirmed test acc ± std [95% CI] | confirmed test sigma ± std "
        "[95% CI] |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        ci, std = r["ci"], r["confirmed_std"]

        def band(metric: str, r: dict[str, Any] = r, ci: Any = ci, std: Any = std) -> str:
            out = f"{_f(r['confirmed_test'].get(metric))} ± {_f(std.get(metric))}"
            if metric in ci:
                out += f" [{_f(ci[metric]['low'])}, {_f(ci[metric]['high'])}]"
            return out

        lines.append(
            f"| {r['seed']} | {r['pick']} | {_f(r['val']['accuracy'])} | "
            f"{_f(r['test']['accuracy'])} | {_f(r['val']['conf_sigma'])} | "
            f"{_f(r['test']['conf_sigma'])} | {r['confirmed_pick']} | "
            f"{_f(r['confirmed_val'].get('accuracy'))} | {band('accuracy')} | "
            f"{band('conf_sigma')} |"
        )
    gap_acc = [r["val"]["accuracy"] - r["test"]["accuracy"] for r in rows]
    gap_sigma = [r["test"]["conf_sigma"] - r["val"]["conf_sigma"] for r in rows]
    changed = sum(r["pick"] != r["confirmed_pick"] for r in rows)
    lines += [
        "",
        f"Optimism of validation for the pick (validation - test accuracy): mean "
        f"{statistics.fmean(gap_acc):+.4f} over {len(rows)} studies (per study: "
        f"{', '.join(f'{g:+.4f}' for g in gap_acc)}); conf_sigma test - validation: mean "
        f"{statistics.fmean(gap_sigma):+.4f}. Confirmation changed the pick in {changed} of "
        f"{len(rows)} studies.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--studies", type=int, default=3)
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--top-k", type=int, default=2, help="Pareto trials confirmed beside the pick")
    p.add_argument("--max-train", type=int, default=1200)
    p.add_argument("--max-eval", type=int, default=300)
    p.add_argument("--kappa", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="1 study of 4 trials, 1 seed")
    add_output_args(p, "raw per-study figures (JSON)")
    args = p.parse_args(argv)
    if args.quick:
        args.studies, args.trials, args.seeds, args.max_train, args.top_k = 1, 4, 1, 400, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    quiet_logging()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [one_study(args, seed, Path(tmp)) for seed in range(args.studies)]
    body = section(args, rows, time.perf_counter() - started)
    publish(SECTION, body, None if args.quick else args.write, args.json, {"studies": rows})


if __name__ == "__main__":
    main()
