"""The markdown section of ``paper_check.py``: the setting, the default recipe over seeds, the
full-space study's pick (validation, test, confirmed test), the goal and a verdict in plain
words from the measured numbers."""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from bench._report import header
from kdsearch.search.leaderboard import is_feasible, trial_metrics

SECTION = "## Paper check, redone: TinyBERT default recipe vs the full search space (test split)"
GOAL_SIGMA_CUT = 0.30  # conf_sigma at least 30% below the default recipe's
GOAL_ACC_COST = 0.01  # at <= 1 point of accuracy


def num(x: Any, digits: int = 4) -> str:
    return "–" if x is None else f"{float(x):.{digits}f}"


def mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def pm(xs: list[float]) -> str:
    m, s = mean_std(xs)
    return f"{m:.4f} ± {s:.4f}"


def section(
    args: argparse.Namespace,
    meta: dict[str, Any],
    default: list[dict[str, Any]],
    trials: list[FrozenTrial],
    final: dict[str, Any],
    first: FrozenTrial | None,
    chosen: FrozenTrial | None,
    describe: Callable[[FrozenTrial], str],
) -> tuple[str, dict[str, Any]]:
    runtime = (
        f"{meta['total_s'] / 60:.1f} min ({meta['ctx_s']:.0f} s preparing the teacher and its "
        f"logits, {meta['study_s'] / 60:.1f} min the full-space study and its end)"
    )
    date = meta["date"].isoformat(timespec="seconds")
    lines = header(SECTION, meta["machine"], runtime, argv=meta["argv"], date=date)
    d_acc = [float(r["test"]["accuracy"]) for r in default]
    d_sig = [float(r["test"]["conf_sigma"]) for r in default]
    d_val_acc = [float(r["val"]["accuracy"]) for r in default]
    d_val_sig = [float(r["val"]["conf_sigma"]) for r in default]
    d_speed = [float(r["val"]["speedup_vs_teacher"]) for r in default]
    teacher = default[0]["test"]["teacher_accuracy"]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    feasible = [t for t in complete if is_feasible(t)]
    lines += [
        "",
        f"Setting: builtin rotten_tomatoes, {meta['n_train']} training / {meta['n_eval']} "
        f"validation / {meta['n_test']} held-out test snippets; teacher builtin MiniLM-L6 "
        f"(project default recipe), test accuracy {num(teacher)}. Default recipe: 2-layer "
        "truncated student, two stages (intermediate, then prediction), T = 1, alpha = 0, soft "
        f"cross-entropy, batch 32, TinyBERT's 10 + 3 epochs x {args.epoch_scale:g}; seeds "
        f"{' '.join(map(str, args.seeds))}. Full-space study: {args.trials} TPE trials over "
        "family (transformer 2/3 layers, BiLSTM, TextCNN), method (kd, theseus, early_exit), "
        "one or two stages, transfer data (up to "
        f"{args.max_transfer} teacher-labelled unlabelled snippets) and augmentation, T, "
        "alpha, soft loss, learning rates and epochs (transformers: at most the default's); "
        "objectives accuracy and conf_sigma; constraint speedup_vs_teacher >= "
        f"{meta['min_speedup']} ({args.speed_share:g} x the default recipe's mean); the pick "
        f"and {args.top_k} other front trial(s) confirmed with {args.confirm_seeds} fresh "
        "seeds; the final pick is the rule on confirmed validation means. Every number below "
        "marked test is on the held-out rows, which no trial and no pick saw.",
        "",
        f"Trials: {len(complete)} complete, {len(feasible)} feasible (fast enough). Study "
        f"status: {final.get('status')}"
        + (f" ({final['error']})" if final.get("error") else "")
        + ".",
        "",
        "| arm | runs | val acc | val conf_sigma | test acc | test conf_sigma | speed-up |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| default recipe (2 layers) | {len(default)} seeds | {pm(d_val_acc)} | "
        f"{pm(d_val_sig)} | {pm(d_acc)} | {pm(d_sig)} | {pm(d_speed)} |",
    ]
    payload: dict[str, Any] = {"default": default, "final": final}
    verdict = ["The study found no pick: nothing to compare."]
    if chosen is not None:
        key = str(chosen.number)
        m = trial_metrics(chosen)
        test = (final.get("test") or {}).get(key) or {}
        conf = (final.get("confirmed") or {}).get(key) or {}
        cm, cs = conf.get("test_mean") or {}, conf.get("test_std") or {}
        vm = conf.get("mean") or {}
        lines.append(
            f"| pick: trial {chosen.number}, {describe(chosen)}, its study run | 1 | "
            f"{num(m.get('accuracy'))} | {num(m.get('conf_sigma'))} | "
            f"{num(test.get('accuracy'))} | {num(test.get('conf_sigma'))} | "
            f"{num(m.get('speedup_vs_teacher'), 2)} |"
        )
        if cm:
            n = len(conf.get("seeds") or [])
            lines.append(
                f"| pick, confirmed ({n} fresh seeds) | {n} | {num(vm.get('accuracy'))} | "
                f"{num(vm.get('conf_sigma'))} | {num(cm.get('accuracy'))} ± "
                f"{num(cs.get('accuracy'))} | {num(cm.get('conf_sigma'))} ± "
                f"{num(cs.get('conf_sigma'))} | {num(vm.get('speedup_vs_teacher'), 2)} |"
            )
        ci = conf.get("ci") or {}
        lines += [
            "",
            f"Pick parameters: {chosen.params}.",
            "95% bootstrap intervals of the confirmed test mean: "
            + ", ".join(f"{k} [{num(v.get('low'))}, {num(v.get('high'))}]" for k, v in ci.items())
            + "."
            if ci
            else "",
        ]
        if first is not None and first.number != chosen.number:
            lines.append(
                f"Confirmation changed the pick: trial {first.number} ({describe(first)}) led on "
                "its single validation run."
            )
        acc = cm.get("accuracy", test.get("accuracy"))
        sig = cm.get("conf_sigma", test.get("conf_sigma"))
        verdict = goal(acc, sig, d_acc, d_sig, bool(cm), cs)
        payload["pick"] = {"number": chosen.number, "params": chosen.params, "metrics": m}
    lines += ["", *verdict, ""]
    lines += [
        "Every trial, by validation accuracy:",
        "",
        "| trial | student, method | val acc | val conf_sigma | speed-up | feasible |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for t in sorted(complete, key=lambda t: -(trial_metrics(t).get("accuracy") or 0))[:12]:
        m = trial_metrics(t)
        lines.append(
            f"| {t.number} | {describe(t)} | {num(m.get('accuracy'))} | "
            f"{num(m.get('conf_sigma'))} | {num(m.get('speedup_vs_teacher'), 2)} | "
            f"{'yes' if is_feasible(t) else 'no'} |"
        )
    payload["trials"] = [
        {"number": t.number, "what": describe(t), "params": t.params, **trial_metrics(t)}
        for t in complete
    ]
    return "\n".join(lines) + "\n", payload


def goal(
    acc: float | None,
    sigma: float | None,
    d_acc: list[float],
    d_sig: list[float],
    confirmed: bool,
    std: dict[str, Any],
) -> list[str]:
    """Was conf_sigma cut by >= 30% at <= 1 point of accuracy, on the test rows?"""
    if acc is None or sigma is None:
        return ["The pick has no test numbers: the goal cannot be judged."]
    da, ds = mean_std(d_acc), mean_std(d_sig)
    cut = 1 - sigma / ds[0]
    cost = da[0] - acc
    met = cut >= GOAL_SIGMA_CUT and cost <= GOAL_ACC_COST
    what = "the confirmed test mean" if confirmed else "its single test run"
    noise = (
        f"seed std of the pick: accuracy {num(std.get('accuracy'))}, conf_sigma "
        f"{num(std.get('conf_sigma'))}; of the default recipe: {da[1]:.4f} and {ds[1]:.4f}"
    )
    return [
        f"Goal (test conf_sigma at least {GOAL_SIGMA_CUT:.0%} below the default recipe's at "
        f"<= {GOAL_ACC_COST * 100:.0f} point of test accuracy): **{'met' if met else 'missed'}**. "
        f"The pick ({what}) has conf_sigma {sigma:.4f} against {ds[0]:.4f} ({cut:+.0%} cut) "
        f"and accuracy {acc:.4f} against {da[0]:.4f} ({-cost * 100:+.1f} points); {noise}."
    ]
