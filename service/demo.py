"""``make demo``: the whole service, end to end, on this machine.

1. Starts ``kdsearch serve`` (SQLite under ``runs/demo``, one embedded worker, open mode)
   on a free loopback port, its log in ``runs/demo/server.log``.
2. Posts ``examples/quickstart.json`` (installed with the package), a small study on the
   builtin data and backbone.
3. Polls the study, showing progress on one line, then prints the leaderboard and the
   recommended trial.
4. Downloads the recommended checkpoint, checks its SHA-256, unpacks it into
   ``runs/demo/student`` and classifies a few sentences with ``transformers.pipeline``.
5. Stops the service, on success, error or Ctrl-C alike.

Run it as ``python -m kdsearch.service.demo`` (``--help`` for the options).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

SENTENCES = (
    "A warm, funny and beautifully acted film that stays with you.",
    "The plot is a mess and the jokes fall flat; I was bored throughout.",
    "An unexpectedly moving story with a terrific central performance.",
    "Dull, overlong and instantly forgettable.",
)
FINAL = ("completed", "failed", "cancelled")


class DemoError(Exception):
    """A failure worth one clear line (no traceback)."""


# -- pieces (pure, tested in tests/test_demo.py) -------------------------------------------


def fmt_duration(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 60}m{s % 60:02d}s"


def format_progress(detail: dict[str, Any], elapsed: float) -> str:
    """One status line: e.g. ``running  2/5 trials done (2 complete, 0 pruned, ...)``."""
    counts = detail.get("trials") or {}
    complete = int(counts.get("COMPLETE", 0))
    pruned = int(counts.get("PRUNED", 0))
    failed = int(counts.get("FAIL", 0))
    running = int(counts.get("RUNNING", 0))
    total = int(detail.get("n_trials", 0))
    done = complete + pruned + failed
    status = str(detail.get("status", "?"))
    note = ""
    if status in ("queued", "running") and done == 0:
        note = "  (the worker fine-tunes the teacher first, unless cached)"
    ending = detail.get("end_jobs") or {}
    if ending.get("total") and status in ("queued", "running"):
        note = (
            f"  then test scoring / confirmation: {ending.get('done', 0)}/{ending['total']} "
            "jobs done"
        )
    return (
        f"{status:<9} {done}/{total} trials done ({complete} complete, {pruned} pruned, "
        f"{failed} failed, {running} running)  elapsed {fmt_duration(elapsed)}{note}"
    )


def _num(value: Any, digits: int = 4) -> str:
    if value is None or isinstance(value, bool):
        return "-"
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def format_leaderboard(rows: Sequence[dict[str, Any]], limit: int = 10) -> str:
    """A text table of leaderboard rows (as served by GET /v1/studies/{id}/trials)."""
    header = (
        "#",
        "state",
        "accuracy",
        "conf_sigma",
        "ece_gap",
        "test:accuracy",
        "test:conf_sigma",
        "pareto",
        "feasible",
    )
    lines = [header]
    for r in list(rows)[:limit]:
        m = r.get("metrics") or {}
        t = r.get("test") or {}
        lines.append(
            (
                str(r.get("number", "?")),
                str(r.get("state", "?")),
                _num(m.get("accuracy")),
                _num(m.get("conf_sigma")),
                _num(m.get("ece_gap")),
                _num(t.get("accuracy")),
                _num(t.get("conf_sigma")),
                "yes" if r.get("pareto") else "",
                "yes" if r.get("feasible") else "no",
            )
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    if not rows:
        out.append("(no trials)")
    return "\n".join(line.rstrip() for line in out)


def format_recommended(best: dict[str, Any]) -> list[str]:
    """Validation, held-out test and confirmed numbers of the recommended trial."""
    metrics = ("accuracy", "conf_sigma")

    def pairs(values: dict[str, Any], std: dict[str, Any] | None = None) -> str:
        out = []
        for k in metrics:
            text = f"{k}={_num(values.get(k))}"
            if std is not None and std.get(k) is not None:
                text += f"±{_num(std.get(k))}"
            out.append(text)
        return "  ".join(out)

    lines = [f"validation (selected on):  {pairs(best.get('metrics') or {})}"]
    test = best.get("test_metrics")
    if test:
        lines.append(f"held-out test (this run):  {pairs(test)}")
    confirmed = best.get("confirmed") or {}
    if confirmed.get("test_mean"):
        n = len(confirmed.get("seeds") or [])
        mean = pairs(confirmed["test_mean"], confirmed.get("test_std"))
        lines.append(f"test, {n} fresh seeds:      {mean}")
        ci = confirmed.get("ci") or {}
        if ci:
            lines.append(
                "95% CI (test rows):        "
                + "  ".join(f"{k} [{_num(v['low'])}, {_num(v['high'])}]" for k, v in ci.items())
            )
    return lines


def format_params(params: dict[str, Any]) -> str:
    parts = []
    for k, v in sorted(params.items()):
        parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return ", ".join(parts)


def verify_checksum(data: bytes, expected: str | None) -> str:
    """The SHA-256 of ``data``; DemoError when it is not the ``expected`` hex digest."""
    actual = hashlib.sha256(data).hexdigest()
    if not expected:
        raise DemoError("checkpoint download has no X-Checksum-SHA256 header to verify")
    if actual.lower() != expected.strip().lower():
        raise DemoError(
            f"checkpoint checksum mismatch: header says {expected.strip()}, "
            f"downloaded {len(data)} bytes hash to {actual}"
        )
    return actual


def extract_checkpoint(data: bytes, dest: Path) -> Path:
    """Unpack a checkpoint .tar.gz into ``dest`` (emptied first); the model folder in it."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise DemoError(f"checkpoint archive could not be unpacked: {exc}") from None
    configs = sorted(dest.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise DemoError(f"checkpoint archive has no config.json (unpacked into {dest})")
    return configs[0].parent


# -- the server ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


@contextlib.contextmanager
def running_server(
    out: Path, port: int, log: IO[str]
) -> Iterator[tuple[subprocess.Popen[bytes], list[bool]]]:
    """``kdsearch serve`` as a child; stopped on the way out (SIGTERM, then wait).

    The yielded flag list holds one bool: set it to True to abandon a running trial on the
    way out (a second SIGTERM), e.g. after Ctrl-C or a timeout.
    """
    cmd = [
        sys.executable,
        "-m",
        "kdsearch.service.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--worker-index",
        "0",  # the demo is reproducible: the same trials every run
        "--open",
        "--database-url",
        f"sqlite:///{(out / 'kdsearch.db').resolve()}",
        "--artifact-dir",
        str((out / "artifacts").resolve()),
    ]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    abandon = [False]
    try:
        yield proc, abandon
    finally:
        stop_server(proc, abandon[0])


def stop_server(proc: subprocess.Popen[bytes], abandon: bool, timeout: float = 300.0) -> None:
    if proc.poll() is not None:
        return
    print("stopping the service ...", flush=True)
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    if abandon:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(3)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)  # the second one abandons the current trial
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def wait_healthy(
    client: Any, proc: subprocess.Popen[bytes], log_path: Path, timeout: float
) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(
                f"the service exited with code {proc.returncode} before it was ready; "
                f"last lines of {log_path}:\n{log_tail(log_path)}"
            )
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise DemoError(f"the service did not answer /healthz within {timeout:.0f}s (see {log_path})")


def _detail(resp: Any) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:500]
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return json.dumps(body)[:500]


def _check(resp: Any, what: str, expected: int = 200) -> Any:
    if resp.status_code != expected:
        raise DemoError(f"{what} answered HTTP {resp.status_code}: {_detail(resp)}")
    return resp


# -- the demo ------------------------------------------------------------------------------


class Progress:
    """One updating line on a terminal; one line per change otherwise (logs, CI)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last = ""
        self.width = 0

    def show(self, text: str, key: str) -> None:
        if self.tty:
            pad = " " * max(0, self.width - len(text))
            self.stream.write(f"\r{text}{pad}")
            self.width = len(text)
        elif key != self.last:
            self.stream.write(text + "\n")
        self.last = key
        self.stream.flush()

    def done(self) -> None:
        if self.tty and self.width:
            self.stream.write("\n")
            self.stream.flush()
        self.width = 0


def poll_study(
    client: Any, study_id: str, interval: float, timeout: float, started: float
) -> dict[str, Any]:
    progress = Progress(sys.stdout)
    deadline = time.monotonic() + timeout
    try:
        while True:
            detail = _check(client.get(f"/v1/studies/{study_id}"), "GET study").json()
            key = json.dumps([detail.get("status"), detail.get("trials")], sort_keys=True)
            progress.show(format_progress(detail, time.monotonic() - started), key)
            if detail.get("status") in FINAL:
                return dict(detail)
            if time.monotonic() > deadline:
                raise TimeoutError
            time.sleep(interval)
    finally:
        progress.done()


def classify(model_dir: Path, sentences: Sequence[str]) -> list[dict[str, Any]]:
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    clf = pipeline("text-classification", model=str(model_dir), tokenizer=str(model_dir))
    return list(clf(list(sentences)))


def run_demo(args: argparse.Namespace) -> int:
    import httpx

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("kdsearch.db", "artifacts", "student"):  # a fresh study every time
        p = out / stale
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    spec = json.loads(Path(args.spec).read_text() if args.spec else example("quickstart.json"))
    port = args.port or free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = out / "server.log"
    started = time.monotonic()

    print(f"starting kdsearch serve on {base} (log: {log_path}) ...", flush=True)
    with (
        log_path.open("w") as log,
        running_server(out, port, log) as (proc, abandon),
        httpx.Client(base_url=base, timeout=60.0) as client,
    ):
        try:
            wait_healthy(client, proc, log_path, timeout=180)
            created = _check(client.post("/v1/studies", json=spec), "POST /v1/studies", 201)
            study_id = created.json()["id"]
            print(
                f"study {study_id}: {spec.get('n_trials')} trials of a "
                f"{spec.get('student', {}).get('num_layers')}-layer student "
                f"(ready in {fmt_duration(time.monotonic() - started)})",
                flush=True,
            )
            try:
                detail = poll_study(client, study_id, args.interval, args.timeout, started)
            except TimeoutError:
                abandon[0] = True
                raise DemoError(
                    f"study {study_id} did not finish within {args.timeout:.0f}s"
                ) from None

            rows = _check(
                client.get(
                    f"/v1/studies/{study_id}/trials",
                    params={"sort": "accuracy", "order": "desc", "limit": 100},
                ),
                "GET trials",
            ).json()["items"]
            print(f"\nleaderboard (by accuracy, top {min(len(rows), 10)} of {len(rows)}):")
            print(format_leaderboard(rows, limit=10))

            if detail["status"] != "completed":
                why = detail.get("error") or "no error recorded"
                raise DemoError(f"study {study_id} {detail['status']}: {why}")
            best = detail.get("recommended")
            if not best:
                raise DemoError(
                    f"study {study_id} completed but no trial meets the constraints "
                    f"{spec.get('constraints')}: nothing to recommend"
                )
            print(
                f"\nrecommended: trial {best['number']} (chosen on "
                f"{best.get('chosen_by', 'validation')})\n  params: "
                f"{format_params(best.get('params') or {})}"
            )
            for line in format_recommended(best):
                print(f"  {line}")

            resp = _check(client.get(f"/v1/studies/{study_id}/checkpoint"), "GET checkpoint")
            digest = verify_checksum(resp.content, resp.headers.get("X-Checksum-SHA256"))
            model_dir = extract_checkpoint(resp.content, out / "student")
            print(
                f"\ncheckpoint of trial {resp.headers.get('X-Trial-Number', '?')}: "
                f"{len(resp.content) / 1e6:.1f} MB, sha256 {digest[:16]}... verified; "
                f"unpacked into {model_dir}"
            )
        except KeyboardInterrupt:
            abandon[0] = True
            raise
        except BaseException:
            if proc.poll() is not None:
                print(f"service log ({log_path}):\n{log_tail(log_path)}", file=sys.stderr)
            raise

    # The service is stopped; the student is a plain Hugging Face folder now.
    print("\nclassifying with transformers.pipeline('text-classification'):")
    for text, pred in zip(SENTENCES, classify(model_dir, SENTENCES), strict=True):
        print(f"  {pred['label']:<10} {pred['score']:.3f}  {text}")
    print(f"\ndone in {fmt_duration(time.monotonic() - started)}")
    return 0


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def example(name: str) -> str:
    """An example spec shipped with the package (``examples/`` in a source checkout)."""
    from importlib.resources import files

    return (files("kdsearch") / "examples" / name).read_text(encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m kdsearch.service.demo", description=__doc__.splitlines()[0]
    )
    p.add_argument(
        "--spec", default=None, help="study spec (JSON; default: the packaged quickstart.json)"
    )
    p.add_argument("--out", default="runs/demo", help="database, artifacts, log and student")
    p.add_argument("--port", type=int, default=0, help="default: a free port")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between polls")
    p.add_argument("--timeout", type=float, default=1800.0, help="give up on the study after")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # so the service is stopped then too
    try:
        return run_demo(args)
    except DemoError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo interrupted: service stopped", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"demo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
