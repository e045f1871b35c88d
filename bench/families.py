"""The frontier across student families: transformer (2 and 3 layers), BiLSTM and TextCNN,
each without and with teacher-labelled transfer data plus augmentation, in one study.

On the offline defaults (builtin rotten_tomatoes, 2,000 labelled / 500 validation snippets,
the builtin MiniLM-L6 teacher fine-tuned once and cached under ``$KDSEARCH_HOME``), one
kdsearch study (objectives accuracy, conf_sigma, latency_ms) gets the 8 arms enqueued as
trials, so every arm is a trial of the same study with the same loss (KL at T=2, alpha 0.3),
the same epochs and one seed. The transfer arms add ``builtin:rotten_tomatoes_unlabelled``
(capped at ``--max-transfer``, soft-labelled by the teacher) and ``--copies`` augmented
copies (Tang et al.: masking 0.1, n-gram sampling 0.25) of the labelled and transfer text.

It records, per family, the best trial (kdsearch's recommendation rule among that family's
trials): accuracy, conf_sigma, agreement, CPU latency and speed-up over the teacher (same
eval rows, batch size and threads, median of repeats), parameters, and the peak memory of
serving the student (a fresh process loads the checkpoint and scores the validation rows;
the RSS it adds over the bare process). Then the Pareto front of accuracy x conf_sigma x
latency, as a table and ``bench/families_pareto.png``.

    .venv/bin/python bench/families.py --threads 2 --write bench/RESULTS.md
    .venv/bin/python bench/families.py --quick          # smoke run, a few minutes
"""

from __future__ import annotations

import argparse
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

from bench._families_report import (  # noqa: E402
    SECTION,
    Arm,
    interleaved_latency,
    load_checkpoint,
    pareto_png,
    section,
    serving_memory,
)
from bench._report import add_output_args, loadavg, machine, publish, versions  # noqa: E402
from kdsearch.distill.context import prepare_context  # noqa: E402
from kdsearch.search.leaderboard import recommended_trial, trial_metrics  # noqa: E402
from kdsearch.search.objective import build_run_config  # noqa: E402
from kdsearch.search.runner import create_study  # noqa: E402
from kdsearch.search.spec import StudySpec  # noqa: E402
from kdsearch.search.worker import Worker, WorkerOptions  # noqa: E402

ARMS = [
    Arm("transformer-2L", {"family": "transformer", "student_layers": 2}),
    Arm("transformer-3L", {"family": "transformer", "student_layers": 3}),
    Arm("bilstm", {"family": "bilstm"}),
    Arm("textcnn", {"family": "textcnn"}),
]


def make_spec(args: argparse.Namespace) -> StudySpec:
    data: dict[str, Any] = {
        "source": "builtin:rotten_tomatoes",
        "max_train": args.max_train,
        "max_eval": args.max_eval,
        "transfer": "builtin:rotten_tomatoes_unlabelled",
        "max_transfer": args.max_transfer,
        "augment": {"mask_prob": 0.1, "ngram_prob": 0.25, "seed": 0},
    }
    space: dict[str, Any] = {
        "family": {"choices": ["transformer", "bilstm", "textcnn"]},
        "student_layers": {"choices": [2, 3]},
        "use_transfer": {"choices": [False, True]},
        "augment_copies": {"choices": [0, args.copies]},
        "temperature": 2.0,
        "alpha": 0.3,
        "soft_loss": "kl",
        "epochs": args.epochs,
        "lr": 1e-4,
        "bilstm_lr": 2e-3,
        "textcnn_lr": 1e-3,
    }
    return StudySpec.model_validate(
        {
            "name": "families",
            "data": data,
            "teacher": {"model": "builtin:minilm-l6"},  # the project's default recipe
            "student": {"kind": "truncate"},
            "training": {"eval_every_steps": 10**9, "device": "cpu"},
            "metrics": {"latency_batches": 3, "latency_repeats": 7},
            "search_space": space,
            "objectives": [
                {"metric": "accuracy"},
                {"metric": "conf_sigma"},
                {"metric": "latency_ms"},
            ],
            "n_trials": 2 * len(ARMS),
            "sampler": "tpe",
            "pruner": {"name": "none"},
            "keep": {"policy": "top_k", "k": 2 * len(ARMS)},
            "seed": 0,
        }
    )


def arm_params(arm: Arm, transfer: bool, copies: int) -> dict[str, Any]:
    return {**arm.params, "use_transfer": transfer, "augment_copies": copies if transfer else 0}


def arm_of(t: FrozenTrial) -> str:
    p = t.params
    family = p["family"]
    name = f"transformer-{p['student_layers']}L" if family == "transformer" else family
    return f"{name}{' +transfer+aug' if p.get('use_transfer') else ''}"


def run_study(args: argparse.Namespace, tmp: Path) -> tuple[list[FrozenTrial], str, Path, float]:
    spec = make_spec(args)
    url = f"sqlite:///{tmp / 'families.db'}"
    name = create_study(spec, url)
    study = optuna.load_study(study_name=name, storage=url)
    for transfer in (False, True):
        for arm in ARMS:
            study.enqueue_trial(arm_params(arm, transfer, args.copies))

    def on_trial(_name: str, t: FrozenTrial) -> None:
        m = trial_metrics(t)
        what = (
            f"acc {m.get('accuracy', 0):.3f} sigma {m.get('conf_sigma') or float('nan'):.4f} "
            f"latency {m.get('latency_ms', 0):.3f} ms x{m.get('speedup_vs_teacher', 0):.1f}"
            if t.state == TrialState.COMPLETE
            else f"{t.state.name} {t.user_attrs.get('error')}"
        )
        print(f"  [trial {t.number} {arm_of(t)}] {what}", flush=True)

    art = tmp / "artifacts"
    opts = WorkerOptions(url, str(art), only_studies={name})
    opts = replace(opts, exit_when_idle=True, torch_threads=args.threads)
    started = time.perf_counter()
    Worker(opts, on_trial=on_trial).run()
    seconds = time.perf_counter() - started
    trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    return trials, url, art, seconds


def best_per_family(trials: list[FrozenTrial]) -> dict[str, FrozenTrial]:
    out: dict[str, FrozenTrial] = {}
    for family in ("transformer", "bilstm", "textcnn"):
        mine = [t for t in trials if t.params.get("family") == family]
        best = recommended_trial(mine)
        if best is not None:
            out[family] = best
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-train", type=int, default=2000)
    p.add_argument("--max-eval", type=int, default=500)
    p.add_argument("--max-transfer", type=int, default=6000)
    p.add_argument("--copies", type=int, default=1, help="augmented copies in the transfer arms")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--png", type=Path, default=Path("bench/families_pareto.png"))
    p.add_argument("--quick", action="store_true", help="tiny smoke run; writes nothing")
    add_output_args(p, "raw figures as JSON")
    args = p.parse_args()
    if args.quick:
        args.max_train, args.max_eval, args.max_transfer, args.epochs = 320, 96, 200, 0.5
        args.write = None
        args.png = Path(tempfile.mkdtemp()) / "families_pareto.png"
    quiet_logging()
    torch.set_num_threads(args.threads)
    load0 = loadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trials, _url, art, study_s = run_study(args, Path(tmp))
        best = best_per_family(trials)
        # the teacher's folder and the validation texts, from the (cached) study context
        ctx = prepare_context(build_run_config(make_spec(args), trials[0].params))
        texts = [e.text for e in ctx.splits.eval]
        teacher = ctx.teacher.path
        assert teacher is not None
        memory = {f: serving_memory(t, art, teacher, texts, args.threads) for f, t in best.items()}
        memory["teacher"] = serving_memory(None, art, teacher, texts, args.threads)
        models = {"teacher": ctx.teacher.module}
        for f, t in best.items():
            models[f] = load_checkpoint(t, art, Path(tmp) / f"best-{f}")
        latency = interleaved_latency(models, ctx)
    runtime = time.perf_counter() - started
    pareto_png(trials, arm_of, args.png)
    where = machine(
        f", {args.threads} torch threads",
        *versions(torch, transformers, optuna),
        load=(load0, loadavg()),
    )
    body, payload = section(args, trials, best, memory, latency, arm_of, where, runtime, study_s)
    publish(SECTION, body, args.write, args.json, payload)


if __name__ == "__main__":
    main()
