"""The confidence report: a real tiny study on SQLite, through the CLI, Chromium and HTTP."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState, create_trial
from PIL import Image

from kdsearch.search import study as study_mod
from kdsearch.search import tables
from kdsearch.search.artifacts import make_artifact_store
from kdsearch.search.leaderboard import recommended_trial
from kdsearch.search.report import build_report, spec_kappa
from kdsearch.search.report_html import render_report
from kdsearch.search.runner import run_study
from kdsearch.search.storage import make_storage
from kdsearch.service.keys import create_key
from kdsearch.service.settings import Settings

from .proc_helpers import run_cli
from .search_helpers import ready_engine, tiny_spec
from .test_api import _serve

CHROMIUM = Path("/usr/bin/chromium")
KAPPA = 0.3
SID = "kd-report"
NAME = '<b>tiny</b> & "report"'
IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
NASTY = "<script>alert(1)</script> & the worker died"


@dataclass
class Studied:
    root: Path
    url: str
    art: Path
    trials: list[FrozenTrial]
    study: optuna.Study


def _report(*args: str) -> subprocess.CompletedProcess[str]:
    """``kdsearch report ARGS``."""
    return run_cli("report", *args, timeout=300)


def _metric(t: FrozenTrial, name: str) -> float:
    return float(t.user_attrs[f"metric:{name}"])


def _pngs(html: str) -> list[bytes]:
    return [base64.b64decode(b, validate=True) for b in IMG.findall(html)]


def _undated(html: str) -> str:
    return re.sub(r'<span id="generated">[^<]*</span>', "", html)


@pytest.fixture(scope="module")
def studied(tiny_ctx, tmp_path_factory: pytest.TempPathFactory) -> Studied:  # type: ignore[no-untyped-def]
    """One real study (a failing trial, then 3 that complete) and two without any result."""
    root = tmp_path_factory.mktemp("report")
    url = f"sqlite:///{root / 'kd.db'}"
    art = root / "artifacts"
    engine = ready_engine(url)
    storage = make_storage(url, engine)
    # an absurd weight decay makes training diverge: that trial fails at its second step
    spec = tiny_spec(
        n_trials=4,
        name=NAME,
        constraints=[{"metric": "conf_sigma", "max": KAPPA}],
        search_space={**tiny_spec().search_space, "weight_decay": {"choices": [0.01, 1e30]}},
    )
    study_mod.create(engine, storage, spec, study_name=SID, owner="alice")
    study = optuna.load_study(study_name=SID, storage=storage)
    for decay in (1e30, 0.01, 0.01, 0.01):
        study.enqueue_trial({"weight_decay": decay})
    run_study(spec, url, str(art), study_name=SID)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] + [TrialState.COMPLETE] * 3

    study_mod.create(engine, storage, tiny_spec(), study_name="kd-report-empty", owner="alice")
    study_mod.create(engine, storage, tiny_spec(), study_name="kd-report-failed", owner="alice")
    failed = optuna.load_study(study_name="kd-report-failed", storage=storage)
    failed.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"error": NASTY}))
    return Studied(root, url, art, trials, study)


@pytest.fixture(scope="module")
def report_html(studied: Studied, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report_out") / "nested"
    proc = _report(
        SID, "--out", str(out), "--database-url", studied.url, "--artifact-dir", str(studied.art)
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(out / "report.html")
    return out / "report.html"


def test_cli_report_holds_the_leaderboard_verdict_and_images(
    studied: Studied, report_html: Path
) -> None:
    html = report_html.read_text()
    trials = studied.trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = recommended_trial(trials)
    assert best is not None  # kappa is generous: some trial meets it

    # the leaderboard: one row per trial, the failure with its error, the pick marked
    for t in trials:
        assert f'<tr id="trial-{t.number}" class="state-{t.state.name}' in html
    assert f'<tr id="trial-{best.number}" class="state-COMPLETE recommended">' in html
    assert "the loss became nan at step 2" in html
    for t in complete:
        assert f"{_metric(t, 'accuracy'):.4g}" in html

    # the verdict judges the held-out test numbers of the pick, its validation ones beside
    run = tables.get(ready_engine(studied.url), SID)
    assert run is not None and run.results is not None
    test = run.results["test"][str(best.number)]
    sigma = test["conf_sigma"]
    if sigma <= KAPPA:
        assert 'class="verdict v-preserved"' in html
        assert (
            f"Confidence is preserved on held-out test data: the recommended trial "
            f"{best.number} has conf_sigma = {sigma:.4f} ≤ κ = {KAPPA:g}." in html
        )
        assert "NOT preserved" not in html
    else:
        assert 'class="verdict v-not_preserved"' in html
        assert (
            f"Confidence is NOT preserved on held-out test data: the recommended trial "
            f"{best.number} has conf_sigma = {sigma:.4f} &gt; κ = {KAPPA:g}." in html
        )
    ci = run.results["intervals"][str(best.number)]
    assert (
        f"Judged on the {run.results['n_test_rows']} held-out test rows: accuracy "
        f"{test['accuracy']:.4f} (95% CI {ci['accuracy']['low']:.4f}–"
        f"{ci['accuracy']['high']:.4f}), conf_sigma {sigma:.4f}" in html
    )
    assert f"where the search selected it: accuracy {_metric(best, 'accuracy'):.4f}" in html
    # test columns: the pick's row and its metrics table hold its test numbers
    assert "<th>test:accuracy</th>" in html and "<th>test (this run)</th>" in html
    assert f"{test['accuracy']:.4g}" in html
    within = sum(_metric(t, "conf_sigma") <= KAPPA for t in complete)
    assert f"{within} of 3 completed trials meet the study&#x27;s constraints" in html
    teacher = _metric(best, "teacher_accuracy")
    assert f"The teacher&#x27;s accuracy (teacher_accuracy) is {teacher:.4f}" in html
    gap = max(_metric(t, "accuracy") for t in complete) - _metric(best, "accuracy")
    if gap <= 0:
        assert "the highest of the completed trials" in html
    else:
        assert f"{gap:.4f}, {gap * 100:.1f} percentage points below" in html
    assert "Other trials: 1 failed." in html
    assert f"κ = {KAPPA:g} (the spec&#x27;s conf_sigma constraint)" in html

    # three PNGs: the Pareto plot and the trial's two stored plots, byte for byte
    pngs = _pngs(html)
    assert len(pngs) == 3 == html.count("<img ")
    for data in pngs:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 300
    store = make_artifact_store(str(studied.art))
    engine = ready_engine(studied.url)
    for a in tables.list_artifacts(engine, SID, kind="plot"):
        if a["trial_number"] == best.number:
            with store.open_reader(a["artifact_id"]) as fh:
                assert fh.read() in pngs

    # importances are computed for both metrics; the constant weight_decay is set aside
    assert 'id="importance-accuracy"' in html and 'id="importance-conf_sigma"' in html
    assert html.count('class="bar"') == 6  # temperature, alpha, lr for each metric
    assert "Left out (one value in every trial): weight_decay." in html

    # self-contained, no script, every study string escaped
    assert "<script" not in html and "<link" not in html
    assert not re.search(r'(?:src|href)="(?!data:)', html)
    assert "&lt;b&gt;tiny&lt;/b&gt; &amp; &quot;report&quot;" in html and NAME not in html


def test_cli_errors_are_one_line(studied: Studied, tmp_path: Path) -> None:
    proc = _report("kd-nope", "--out", str(tmp_path), "--database-url", studied.url)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        f"kdsearch: error: no study named 'kd-nope' in {studied.url} (see `kdsearch study show`)"
    )
    proc = _report(SID, "--out", str(tmp_path), "--database-url", studied.url, "--kappa", "-1")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "kdsearch: error: --kappa must be a positive number (got -1.0)"
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    proc = _report(SID, "--out", str(tmp_path), "--database-url", missing)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert not (tmp_path / "none.db").exists()


def test_a_tighter_kappa_turns_the_verdict(studied: Studied) -> None:
    engine = ready_engine(studied.url)
    store = make_artifact_store(str(studied.art))
    best = recommended_trial(studied.trials)
    assert best is not None
    run = tables.get(engine, SID)
    assert run is not None and run.results is not None
    test_sigma = run.results["test"][str(best.number)]["conf_sigma"]
    sigmas = sorted(
        [_metric(t, "conf_sigma") for t in studied.trials if t.state == TrialState.COMPLETE]
        + [test_sigma]
    )
    tight = build_report(studied.study, engine, store, kappa=sigmas[0] / 2)
    assert tight.kappa_source == "override" and tight.verdict.state == "not_preserved"
    assert tight.verdict.headline == (
        f"Confidence is NOT preserved on held-out test data: the recommended trial "
        f"{best.number} has conf_sigma = {test_sigma:.4f} > κ = {sigmas[0] / 2:g}."
    )
    assert f"No completed trial has conf_sigma ≤ κ = {sigmas[0] / 2:g}." in tight.verdict.details
    flips = run.results["test"][str(best.number)]["decision_flip_rate"]
    assert (
        f"decision_flip_rate = {flips:.4f} on the test rows: at the thresholds 0.6, 0.9, the "
        f"student would route {flips * 100:.1f}% of items to a different band than the teacher."
    ) in tight.verdict.details
    assert "Confidence is NOT preserved" in render_report(tight)
    spec_report = build_report(studied.study, engine, store)
    assert spec_report.kappa == KAPPA and spec_report.kappa_source == "spec"
    assert [p.number for p in spec_report.points] == [1, 2, 3]
    assert any(p.pareto for p in spec_report.points)


def test_spec_kappa_is_the_tightest_conf_sigma_bound() -> None:
    assert spec_kappa({"constraints": []}) is None
    assert spec_kappa(None) is None
    assert spec_kappa({"constraints": [{"metric": "accuracy", "min": 0.8}]}) is None
    both = [{"metric": "conf_sigma", "max": 0.1}, {"metric": "conf_sigma", "max": 0.08}]
    assert spec_kappa({"constraints": both}) == 0.08


def _chromium() -> str:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install it (`apt-get install chromium`) to render the report"
        )
    return str(CHROMIUM)


def _headless(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def probe_in_chromium(page: Path, tmp_path: Path, fields: str) -> dict[str, Any]:
    """Load ``page`` in an iframe of headless Chromium and return, as JSON, whether each of
    its images loaded (``loaded``) plus ``fields``: JavaScript object members over ``doc``,
    the page's document."""
    wrapper = tmp_path / "wrapper.html"
    wrapper.write_text(
        "<!DOCTYPE html><html><body>"
        f'<iframe id="r" src="{page.as_uri()}" width="1280" height="3000"></iframe>'
        '<pre id="out">pending</pre><script>'
        "document.getElementById('r').addEventListener('load', function () {"
        "  var doc = this.contentDocument, res = [];"
        "  for (var i = 0; i < doc.images.length; i++) {"
        "    var im = doc.images[i]; res.push(im.complete && im.naturalWidth > 0);"
        "  }"
        f"  document.getElementById('out').textContent = JSON.stringify({{loaded: res, {fields}}});"
        "});</script></body></html>"
    )
    proc = _headless(
        tmp_path,
        "--allow-file-access-from-files",
        "--virtual-time-budget=5000",
        "--dump-dom",
        wrapper.as_uri(),
    )
    found = re.search(r'<pre id="out">(.*?)</pre>', proc.stdout, re.S)
    assert found is not None, proc.stdout[-2000:] + proc.stderr[-2000:]
    out: dict[str, Any] = json.loads(found.group(1))
    return out


def test_chromium_renders_the_page_and_loads_every_image(report_html: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    proc = _headless(
        tmp_path, f"--screenshot={shot}", "--window-size=1280,4000", report_html.as_uri()
    )
    assert shot.exists(), proc.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1280, 4000)
        colours = im.convert("RGB").getcolors(maxcolors=1 << 22)
    assert colours is not None and len(colours) > 200  # text, plots, tables: not blank
    top_share = max(n for n, _ in colours) / (1280 * 4000)
    assert top_share < 0.9

    result = probe_in_chromium(
        report_html,
        tmp_path,
        "title: doc.title, verdict: doc.getElementById('verdict') !== null",
    )
    assert result["title"] == f"kdsearch confidence report: {SID}"
    assert result["loaded"] == [True, True, True]
    assert result["verdict"] is True


@dataclass
class Served:
    base: str
    keys: dict[str, str]

    def get(self, path: str, who: str | None = "alice") -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[who]}"} if who else {}
        return httpx.get(f"{self.base}{path}", headers=headers, timeout=120)


@pytest.fixture(scope="module")
def served(studied: Studied) -> Iterator[Served]:
    engine = ready_engine(studied.url)
    keys = {
        "alice": create_key(engine, "alice"),
        "bob": create_key(engine, "bob"),
        "admin": create_key(engine, "root", admin=True),
    }
    settings = Settings(
        database_url=studied.url,
        artifact_dir=str(studied.art),
        data_roots=[studied.root],
        model_roots=[studied.root],
    )
    for base in _serve(settings):
        yield Served(base, keys)


def test_http_report_is_the_same_page(served: Served, report_html: Path) -> None:
    r = served.get(f"/v1/studies/{SID}/report")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert _undated(r.text) == _undated(report_html.read_text())
    admin = served.get(f"/v1/studies/{SID}/report", "admin")
    assert admin.status_code == 200 and _undated(admin.text) == _undated(r.text)
    tight = served.get(f"/v1/studies/{SID}/report?kappa=0.0001")
    assert tight.status_code == 200 and "Confidence is NOT preserved" in tight.text
    assert "κ = 0.0001 (given for this report)" in tight.text


def test_http_report_auth_and_errors(served: Served) -> None:
    r = served.get(f"/v1/studies/{SID}/report", None)
    assert r.status_code == 401 and r.json()["detail"].startswith("missing API key")
    r = served.get(f"/v1/studies/{SID}/report", "bob")
    assert r.status_code == 403
    assert r.json()["detail"] == f"study {SID!r} belongs to another owner"
    r = served.get("/v1/studies/kd-unknown/report")
    assert r.status_code == 404 and r.headers["content-type"] == "application/json"
    assert r.json()["detail"] == "study 'kd-unknown' does not exist: list yours at /v1/studies"
    r = served.get(f"/v1/studies/{SID}/report?kappa=0")
    assert r.status_code == 422 and "kappa" in r.json()["detail"]


def test_a_study_without_a_completed_trial_still_renders(served: Served) -> None:
    for sid, n_trials in (("kd-report-empty", 0), ("kd-report-failed", 1)):
        r = served.get(f"/v1/studies/{sid}/report")
        assert r.status_code == 200, r.text
        html = r.text
        assert "No trial has completed yet, so there is no student to judge." in html
        assert 'class="verdict v-no_trials"' in html
        assert "No completed trial has both accuracy and conf_sigma yet" in html
        assert "No trial is recommended" in html
        assert "Too few completed trials with accuracy (0; at least 3" in html
        assert html.count("<img ") == 0
        assert html.count('<tr id="trial-') == n_trials
        assert "no κ set" in html
    # the failure is shown, escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; the worker died" in html
    assert "<script>" not in html
    assert "Latest failure (trial 0)" in html
