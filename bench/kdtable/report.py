"""The markdown section and the figure of ``compare.py``, from its summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.kdtable.simulator import Table
from kdsearch.search.samplers import tpe_startup_trials
from kdsearch.search.spec import PrunerSpec

GOAL_TRIALS = 20
GOAL_SAVED = 0.30
GOAL_HV = 0.98
SAMPLERS = ("random", "tpe", "nsga2", "gp")


def _ci(m: float, lo: float, hi: float, digits: int = 4) -> str:
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _pct(m: float, lo: float, hi: float) -> str:
    return f"{100 * m:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def _table_facts(table: Table) -> list[str]:
    meta = table.meta
    axes = ", ".join(f"{k} {list(v)}" for k, v in table.axes.items())
    spec = meta["spec"]
    data, batch = spec["data"], spec["search_space"]["batch_size"]
    return [
        f"Table: `bench/kdtable/table.json.gz`, {meta.get('n_configs', len(table.rows))} "
        f"configs ({axes}), each a real kdsearch trial on the builtin pair (MiniLM-L6 teacher "
        f"fine-tuned on {data['max_train']} rotten_tomatoes snippets; {data['max_eval']} "
        f"validation rows, {data['max_length']} tokens, batch {batch}, "
        f"an evaluation every {spec['training']['eval_every_steps']} steps), "
        f"{meta.get('total_seconds', 0) / 3600:.1f} h of compute in all; made with "
        f"`{meta.get('command', '?')}` (torch threads {meta.get('threads', '?')}).",
    ]


def section(lines: list[str], s: dict[str, Any], table: Table, plot: Path | None) -> str:
    n, seeds = s["n_trials"], s["n_seeds"]
    d = PrunerSpec()
    out = [*lines, ""]
    out += _table_facts(table)
    out += [
        "",
        f"Each variant ran {seeds} seeds x {n} simulated trials (`bench/kdtable/simulator.py`: "
        "the real Optuna sampler and kdsearch's pruning code, each suggestion answered by the "
        "nearest grid point's learning curve; a trial costs the table's seconds up to its last "
        "evaluation). Hypervolume (HV) of (accuracy, conf_sigma) against (0.5, 0.5); the whole "
        f"grid's Pareto front reaches {s['grid_hv']:.4f}. Brackets: 95 % intervals over seeds "
        "(Student t for means, bootstrap for ratios). Pruning rules at the spec defaults "
        f"(`min_trials` {d.min_trials}; dominance `min_dominating` {d.min_dominating}; "
        f"pareto_rank `percentile` {d.percentile:g}; warm-up {d.warmup_progress:g}); TPE's "
        f"start-up trials: {tpe_startup_trials(n)} (`tpe_startup_trials({n})`). "
        "`bench/kdtable/sweep.py` (next section) measured other settings on other seeds.",
        "",
    ]
    # goal 1
    reach = s["reach"]
    best = min(
        (lab for lab in SAMPLERS if lab != "random"),
        key=lambda lab: reach[lab] if reach[lab] is not None else 10**9,
    )
    k = reach[best]
    verdict = "met" if k is not None and k <= GOAL_TRIALS else "missed"
    out += [
        f"**Goal 1 ({verdict}):** random's mean {n}-trial HV is {s['random_final']:.4f}; the best "
        f"sampler, {best}, reaches it at trial {k if k is not None else f'> {n}'} "
        f"(goal <= {GOAL_TRIALS}).",
        "",
        "| sampler | HV at 10 | HV at 20 | HV at "
        f"{n} | trials to random's {n}-trial HV | compute for {n} trials (s) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    labels = [*SAMPLERS, *(lab for lab in s["curves"] if lab.startswith("tpe (start-up"))]
    for lab in labels:
        c, cost = s["curves"][lab], s["mean_cost"][lab]
        out.append(
            f"| {lab} | {_ci(*c[9])} | {_ci(*c[min(19, n - 1)])} | {_ci(*c[-1])} | "
            f"{reach[lab] if reach[lab] is not None else f'> {n}'} | "
            f"{_ci(cost[0], cost[1], cost[2], digits=0)} |"
        )
    # goal 2
    rows = s["pruning"]
    ok = [r for r in rows if r["saved"] >= GOAL_SAVED and r["hv_ratio"][0] >= GOAL_HV]
    if ok:
        top = max(ok, key=lambda r: r["saved"])
        verdict2 = (
            f"met by {top['sampler']} + {top['rule']}: {100 * top['saved']:.1f}% saved at "
            f"{100 * top['hv_ratio'][0]:.1f}% of the unpruned HV"
        )
    else:
        verdict2 = "missed: no sampler and rule saves >= 30% at >= 98% of the unpruned HV"
    out += [
        "",
        f"**Goal 2 ({verdict2}).**",
        "",
        f"| sampler | rule | trials pruned | compute saved | final HV vs unpruned ({n} trials) "
        "| HV vs unpruned at the same compute |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lo, hi = r["saved_ci"]
        out.append(
            f"| {r['sampler']} | {r['rule']} | {100 * r['pruned']:.0f}% | "
            f"{_pct(r['saved'], lo, hi)} | {_pct(*r['hv_ratio'])} | {_pct(*r['hv_same_compute'])} |"
        )
    sim = s["sim_seconds"]
    out += [
        "",
        f"Simulation cost per {n}-trial study (mean wall seconds of the simulator itself): "
        + ", ".join(f"{lab} {sim[lab]:.1f}" for lab in SAMPLERS)
        + ".",
    ]
    if plot:
        out += ["", f"![HV against trials and compute](kdtable/{plot.name})"]
    return "\n".join(out) + "\n"


def plot(s: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    x = range(1, s["n_trials"] + 1)
    for lab in SAMPLERS:
        m, lo, hi = zip(*s["curves"][lab], strict=True)
        a1.plot(x, m, label=lab)
        a1.fill_between(x, lo, hi, alpha=0.2)
    a1.axhline(s["random_final"], color="grey", lw=0.8, ls="--")
    a1.set_xlabel("trials")
    a1.set_ylabel("hypervolume (accuracy, conf_sigma)")
    a1.set_title("no pruning")
    a1.legend()
    best = max(SAMPLERS, key=lambda lab: s["curves"][lab][-1][0])
    grid = s["cost_grid"]
    for lab in ("random", best, f"{best} + dominance", f"{best} + pareto_rank"):
        m, lo, hi = zip(*s["cost_curves"][lab], strict=True)
        a2.plot(grid, m, label=lab)
        a2.fill_between(grid, lo, hi, alpha=0.2)
    a2.set_xlabel("simulated compute (s)")
    a2.set_title("against compute")
    a2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
