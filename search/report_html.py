"""The report as one self-contained HTML page: inline CSS, images as data: URIs, no script.

Every string that comes from the study (names, parameters, errors) goes through
:func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
import math
from typing import Any

from kdsearch.distill.metric_registry import display_names

from .report import Importance, Report
from .report_plots import pareto_png

__all__ = ["render_report"]

LEADERBOARD_METRICS = (
    "accuracy",
    "conf_sigma",
    "decision_flip_rate",
    "conf_bias",
    "conf_mae",
    "agreement",
    "ece_gap",
)
TEST_COLUMNS = ("accuracy", "conf_sigma")

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
background:#f6f7f9;color:#1d2330;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:24px 28px 48px}
h1{margin:0 0 4px;font-size:1.7rem}h2{margin:0 0 12px;font-size:1.25rem}
h3{margin:16px 0 8px;font-size:1.05rem}
section{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:18px 22px;
margin:18px 0}
.sub{color:#5a6272;margin:0}code{background:#eef0f4;padding:1px 5px;border-radius:4px}
.verdict{border-left:8px solid #8a94a6}.verdict .headline{font-size:1.15rem;font-weight:600}
.v-preserved{border-left-color:#2e9d4f;background:#f1fbf4}
.v-not_preserved{border-left-color:#d33a3a;background:#fdf3f3}
.v-undecided{border-left-color:#d99a1e;background:#fff9ee}
.v-no_trials{border-left-color:#8a94a6;background:#f4f5f8}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #e4e7ec;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f6;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.recommended td{background:#eaf7ee;font-weight:600}tr.state-FAIL td{background:#fdf1f1}
tr.state-PRUNED td,tr.state-RUNNING td,tr.state-WAITING td{color:#6b7280}
.err{color:#b42318;font-size:.85rem;overflow-wrap:anywhere}
tr.error-row td{border-top:0}
.plots{display:flex;flex-wrap:wrap;gap:18px}figure{margin:0;flex:1 1 420px}
figure img,.wide{max-width:100%;height:auto;border:1px solid #e4e7ec;border-radius:4px}
figcaption{color:#5a6272;font-size:.88rem;margin-top:4px}
.note{color:#6b5800;background:#fff7d6;border-radius:4px;padding:6px 10px;margin:8px 0}
.bar{display:inline-block;height:12px;background:#4c78a8;border-radius:2px;
vertical-align:middle;margin-right:6px}
.facts{display:flex;flex-wrap:wrap;gap:8px 22px;margin:10px 0 0;color:#333}
.facts span b{font-variant-numeric:tabular-nums}
.cols{display:flex;flex-wrap:wrap;gap:22px}.cols>div{flex:1 1 300px}
.scroll{overflow-x:auto}#leaderboard table{font-size:.84rem}
#leaderboard td.num{white-space:nowrap}
"""


def e(value: Any) -> str:
    """Escaped text of any value."""
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "–" if not math.isfinite(value) else f"{value:.4g}"
    return e(value)


def _figure(name: str, data: bytes, caption: str) -> str:
    """A plot with its caption, ``id="plot-<name>"``."""
    return (
        f'<figure id="plot-{name}">{img(data, caption)}'
        f"<figcaption>{e(caption)}</figcaption></figure>"
    )


def _notes(notes: list[str]) -> str:
    return "".join(f'<p class="note">{e(n)}</p>' for n in notes)


def img(data: bytes, alt: str, cls: str = "") -> str:
    b64 = base64.b64encode(data).decode("ascii")
    klass = f' class="{cls}"' if cls else ""
    return f'<img src="data:image/png;base64,{b64}" alt="{e(alt)}"{klass}>'


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{e(k)}={fmt(v)}" for k, v in params.items()) or "–"


def _header(r: Report) -> str:
    name = f" — {e(r.name)}" if r.name else ""
    counts = " ".join(
        f"<span>{e(state.lower())}: <b>{n}</b></span>" for state, n in r.counts.items() if n
    )
    objectives = ", ".join(
        f"{e(m)} ({e(d)})" for m, d in zip(r.objectives, r.directions, strict=False)
    )
    if r.kappa is None:
        kappa = "no κ set (no conf_sigma constraint in the spec)"
    elif r.kappa_source == "spec":
        kappa = f"κ = {r.kappa:g} (the spec's conf_sigma constraint)"
    else:
        kappa = f"κ = {r.kappa:g} (given for this report)"
    kappa = e(kappa)
    error = f'<p class="err">study error: {e(r.error)}</p>' if r.error else ""
    return (
        f"<header><h1>Confidence report: <code>{e(r.study_id)}</code>{name}</h1>"
        f'<p class="sub">status {e(r.status)} · objectives {objectives or "–"} · {kappa}'
        f' · generated <span id="generated">{e(r.generated_at)}</span></p>'
        f'<div class="facts">{counts or "<span>no trials yet</span>"}</div>{error}</header>'
    )


def _verdict(r: Report) -> str:
    v = r.verdict
    items = "".join(f"<li>{e(d)}</li>" for d in v.details)
    return (
        f'<section id="verdict" class="verdict v-{e(v.state)}"><h2>Verdict</h2>'
        f'<p class="headline">{e(v.headline)}</p><ul>{items}</ul></section>'
    )


def _pareto(r: Report) -> str:
    rec = r.recommended["number"] if r.recommended else None
    if not r.points:
        body = (
            '<p class="note">No completed trial has both accuracy and conf_sigma yet: '
            "there is nothing to plot.</p>"
        )
    else:
        picture = pareto_png(r.points, r.kappa, rec, r.teacher_accuracy)
        on_front = ", ".join(str(p.number) for p in r.points if p.pareto)
        front = f"trials {on_front}" if on_front else "empty, as no trial meets the constraints"
        body = (
            img(picture, "accuracy against conf_sigma of the completed trials", "wide")
            + f"<p>Pareto front (accuracy up, conf_sigma down; among the trials meeting the "
            f"constraints): {front}. Crosses break the constraints; the star is the "
            "recommended trial.</p>"
        )
    return f'<section id="pareto"><h2>Accuracy against conf_sigma</h2>{body}</section>'


def _recommended(r: Report) -> str:
    rec = r.recommended
    if rec is None:
        return (
            '<section id="recommended"><h2>Recommended trial</h2><p class="note">No trial is '
            "recommended: no completed trial meets the study's constraints.</p></section>"
        )
    metrics = rec["metrics"]
    test = rec.get("test") or {}
    confirmed = rec.get("confirmed") or {}
    c_mean, c_std = confirmed.get("test_mean") or {}, confirmed.get("test_std") or {}
    heads = ["metric", "validation (selected on)"]
    if test:
        heads.append("test (this run)")
    if c_mean:
        heads.append(f"test, mean ± std of {len(confirmed.get('seeds', []))} fresh seeds")

    def cells(m: str) -> str:
        out = f'<td class="num">{fmt(metrics.get(m))}</td>'
        if test:
            out += f'<td class="num">{fmt(test.get(m))}</td>'
        if c_mean:
            shown = fmt(c_mean.get(m))
            if m in c_std:
                shown += f" ± {fmt(c_std[m])}"
            out += f'<td class="num">{shown}</td>'
        return out

    rows = "<tr>" + "".join(f"<th>{e(h)}</th>" for h in heads) + "</tr>"
    rows += "".join(f"<tr><th>{e(m)}</th>{cells(m)}</tr>" for m in display_names() if m in metrics)
    intervals = confirmed.get("ci") or rec.get("intervals") or {}
    ci_note = "".join(
        f'<p class="ci">{e(m)} 95% CI over the test rows: {fmt(v["low"])} – {fmt(v["high"])}'
        f" ({'mean of the fresh seeds' if confirmed.get('ci') else 'this run'}, "
        f"{v['resamples']} bootstrap resamples)</p>"
        for m, v in intervals.items()
    )
    chosen = (
        "chosen by THE RULE on the confirmed validation means of its fresh-seed re-runs"
        if rec.get("chosen_by") == "confirmed validation means"
        else "chosen by THE RULE on validation"
    )
    params = "".join(
        f'<tr><th>{e(k)}</th><td class="num">{fmt(v)}</td></tr>' for k, v in rec["params"].items()
    )
    captions = {
        "reliability": "Reliability diagram: teacher (blue) and the recommended student "
        "(orange), with each one's ECE.",
        "confidence_scatter": "Teacher against student probability of the reference class, "
        "one dot per held-out example; conf_sigma is computed on the green dots.",
    }
    figures = [_figure(name, r.plots[name], c) for name, c in captions.items() if name in r.plots]
    notes = _notes(r.plot_notes)
    return (
        f'<section id="recommended"><h2>Recommended trial {rec["number"]}</h2>'
        f'<p class="sub">{e(chosen)}</p>'
        '<div class="cols"><div><h3>Parameters</h3><table>'
        f"{params or '<tr><td>none searched</td></tr>'}</table></div>"
        f'<div><h3>Metrics</h3><table id="recommended-metrics">{rows}</table>{ci_note}</div>'
        "</div>"
        f'<div class="plots">{"".join(figures)}</div>{notes}</section>'
    )


def _importance(imp: Importance) -> str:
    want = "higher" if imp.direction == "maximize" else "lower"
    head = f"<h3>{e(imp.metric)} ({want} is better; {imp.n_trials} completed trials)</h3>"
    note = f'<p class="note">{e(imp.note)}</p>' if imp.note else ""
    if not imp.values:
        return f'<div class="importance" id="importance-{e(imp.metric)}">{head}{note}</div>'
    top = max(imp.values.values()) or 1.0
    rows = "".join(
        f'<tr><th>{e(k)}</th><td><span class="bar" style="width:{max(1, round(160 * v / top))}px">'
        f"</span>{v:.3f}</td></tr>"
        for k, v in sorted(imp.values.items(), key=lambda kv: -kv[1])
    )
    return (
        f'<div class="importance" id="importance-{e(imp.metric)}">{head}'
        f"<table>{rows}</table>{note}</div>"
    )


def _importances(r: Report) -> str:
    body = "".join(_importance(i) for i in r.importances)
    return (
        '<section id="importances"><h2>Parameter importances</h2>'
        "<p>optuna.importance.get_param_importances (PED-ANOVA, Optuna's default), per "
        f'metric, normalised to sum to 1.</p><div class="cols">{body}</div></section>'
    )


def _leaderboard(r: Report) -> str:
    rec = r.recommended["number"] if r.recommended else None
    tests = [f"test:{m}" for m in TEST_COLUMNS]
    names = (
        "#",
        "state",
        "Pareto",
        "feasible",
        "method",
        "parameters",
        *LEADERBOARD_METRICS,
        *tests,
        "seconds",
    )
    head = "".join(f"<th>{e(h)}</th>" for h in names)
    body = []
    for row in r.rows:
        classes = f"state-{e(row['state'])}" + (" recommended" if row["number"] == rec else "")
        metrics = row["metrics"]
        cells = "".join(f'<td class="num">{fmt(metrics.get(m))}</td>' for m in LEADERBOARD_METRICS)
        test = row.get("test") or {}
        cells += "".join(f'<td class="num">{fmt(test.get(m))}</td>' for m in TEST_COLUMNS)
        feasible = fmt(row["feasible"]) if row["state"] == "COMPLETE" else "–"
        body.append(
            f'<tr id="trial-{row["number"]}" class="{classes}"><td>{row["number"]}'
            f"{' ★' if row['number'] == rec else ''}</td><td>{e(row['state'])}</td>"
            f"<td>{'yes' if row['pareto'] else ''}</td><td>{feasible}</td>"
            f"<td>{e(row.get('method') or '–')}</td><td>{_params(row['params'])}</td>{cells}"
            f'<td class="num">{fmt(row["duration_s"])}</td></tr>'
        )
        if row.get("error"):  # a row of its own, under the trial's
            body.append(
                f'<tr class="{classes} error-row"><td></td><td class="err" '
                f'colspan="{len(names) - 1}">error: {e(str(row["error"])[:1000])}</td></tr>'
            )
    rows = "".join(body) or f'<tr><td colspan="{len(names)}">no trials</td></tr>'
    return (
        '<section id="leaderboard"><h2>Leaderboard</h2><p>Every trial by number; ★ marks the '
        "recommended one, Pareto is on the study's objectives. Metrics are on validation; "
        "the test columns are filled at the study's end for the recommended and Pareto "
        "trials.</p>"
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div></section>"
    )


FOOTER = (
    "<footer><p class=sub>conf_sigma: over the held-out examples that teacher and student "
    "both classify correctly, the population standard deviation of p_teacher(r|x) − "
    "p_student(r|x) for a fixed reference class r (Vengertsev &amp; Sherman, "
    "arXiv:2401.11365). Confidence is preserved when conf_sigma ≤ κ. Generated by "
    "kdsearch.</p></footer>"
)


SWEEP_COLUMNS = (
    "speed",
    "accuracy",
    "conf_sigma",
    "agreement",
    "mean_exit_layer",
    "latency_ms",
    "speedup_vs_teacher",
)


def _speed_sweep(r: Report) -> str:
    s = r.speed_sweep
    if s is None:
        return ""
    who = "the recommended trial" if s.recommended else "the best-ranked early-exit trial"
    head = "".join(f"<th>{e(c)}</th>" for c in SWEEP_COLUMNS)
    body = "".join(
        f'<tr class="{"recommended" if row.get("trained") else ""}">'
        + "".join(f'<td class="num">{fmt(row.get(c))}</td>' for c in SWEEP_COLUMNS)
        + "</tr>"
        for row in s.rows
    )
    caption = (
        "Accuracy and conf_sigma (validation) against the measured speed-up over the "
        "teacher, one point per speed threshold, all from one trained model; ringed: the "
        "speed the trial was trained and scored at."
    )
    figure = _figure("speed_sweep", s.png, caption) if s.png else ""
    notes = _notes(s.notes)
    return (
        f'<section id="speed-sweep"><h2>Early exit: speed sweep of trial {s.number}</h2>'
        f'<p class="sub">{e(who)}: a row leaves at the first exit whose normalised entropy '
        "is at most the speed; every metric uses the exit each row took.</p>"
        f'<div class="plots">{figure}<div class="scroll"><table id="speed-sweep-table">'
        f"<tr>{head}</tr>{body}</table></div></div>{notes}</section>"
    )


def render_report(r: Report) -> str:
    """The whole page."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>kdsearch confidence report: {e(r.study_id)}</title><style>{CSS}</style>"
        f"</head><body><main>{_header(r)}{_verdict(r)}{_pareto(r)}{_recommended(r)}"
        f"{_speed_sweep(r)}"
        f"{_importances(r)}{_leaderboard(r)}{FOOTER}</main></body></html>\n"
    )
