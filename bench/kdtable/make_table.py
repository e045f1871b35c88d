"""Evaluate every grid config once and store its learning curve: ``table.json.gz``.

Each config is a real kdsearch trial (``search.objective.build_run_config`` on the grid's
spec, ``distill.run.run_distillation`` with one shared prepared context), so a real study
with the same spec and seed computes the same numbers. At every evaluation the table keeps
every objective metric and the wall seconds since the trial started; at the end, the final
metrics and the trial's total seconds (evaluations and the latency probe included).

    .venv/bin/python bench/kdtable/make_table.py                     # the whole grid
    .venv/bin/python bench/kdtable/make_table.py --limit 4 --out /tmp/t.json.gz

A run appends each finished config to ``<out>.partial-<shard>.jsonl`` and skips configs
already in any such file, so an interrupted run resumes. ``--shard i/n`` evaluates every n-th
config from the i-th (run n processes, one per core); the table is written by whichever run
finds every config in.

    .venv/bin/python bench/kdtable/make_table.py --shard 0/2 &
    .venv/bin/python bench/kdtable/make_table.py --shard 1/2
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench.*, this checkout first
from bench._env import bench_env, quiet_logging

bench_env("TOKENIZERS_PARALLELISM", "MPLBACKEND")
import torch  # noqa: E402

from bench.kdtable.grid import AXES, config_key, grid_configs, study_spec  # noqa: E402
from kdsearch.distill.context import RunContext, prepare_context  # noqa: E402
from kdsearch.distill.metric_registry import objective_metrics as metric_directions  # noqa: E402
from kdsearch.distill.run import run_distillation  # noqa: E402
from kdsearch.distill.train import EvalEvent  # noqa: E402
from kdsearch.search.objective import build_run_config  # noqa: E402
from kdsearch.search.spec import StudySpec  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "table.json.gz"
DIGITS = 6


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    x = float(v)
    return round(x, DIGITS) if math.isfinite(x) else None


def objective_metrics(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """Every objective metric present in ``metrics`` (undefined ones as ``None``)."""
    return {name: _num(metrics.get(name)) for name in metric_directions() if name in metrics}


def evaluate_config(
    spec: StudySpec,
    ctx: RunContext,
    params: Mapping[str, Any],
    axes: Mapping[str, Sequence[float]] = AXES,
) -> dict[str, Any]:
    """One config's row: its params, learning curve and final metrics."""
    sampled = {**{k: v for k, v in spec.search_space.items() if not isinstance(v, dict)}}
    sampled.update(params)
    cfg = build_run_config(spec, sampled)
    curve: list[dict[str, Any]] = []
    started = time.perf_counter()

    def on_eval(event: EvalEvent) -> None:
        curve.append(
            {
                "step": event.step,
                "seconds": round(time.perf_counter() - started, 4),
                "values": objective_metrics(event.metrics),
            }
        )

    result = run_distillation(cfg, ctx=ctx, callback=on_eval)
    seconds = time.perf_counter() - started
    return {
        "key": config_key(params, axes),
        # when and how busy the machine was: the seconds below are wall-clock
        "made": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load1": round(os.getloadavg()[0], 2),
        "params": dict(params),
        "total_steps": curve[-1]["step"] if curve else 0,
        "seconds": round(seconds, 4),
        "curve": curve,
        "final": objective_metrics(result.metrics),
    }


def partial_files(out: Path) -> list[Path]:
    return sorted(out.parent.glob(out.name + ".partial-*.jsonl"))


def read_partial(paths: Sequence[Path]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[row["key"]] = row
    return rows


def build(
    spec_dict: Mapping[str, Any],
    configs: Sequence[Mapping[str, Any]],
    partial: Path,
    log: Callable[[str], None] = print,
    shard: tuple[int, int] = (0, 1),
    axes: Mapping[str, Sequence[float]] = AXES,
    reverse: bool = False,
) -> dict[str, dict[str, Any]]:
    """Evaluate this shard's configs not yet in any partial file next to ``partial``
    (appending to ``partial``); returns every row evaluated so far, by key. ``reverse``
    walks the shard from its end; a config another process wrote meanwhile is skipped."""
    spec = StudySpec.model_validate(dict(spec_dict))
    out = partial.with_name(partial.name.split(".partial-")[0])
    done = read_partial(partial_files(out))
    index, count = shard
    todo = [
        c for i, c in enumerate(configs) if i % count == index and config_key(c, axes) not in done
    ]
    if reverse:
        todo.reverse()
    if todo:
        base = build_run_config(spec, dict(todo[0]))
        ctx = prepare_context(base)
        started = time.perf_counter()
        with partial.open("a") as f:
            for i, params in enumerate(todo, 1):
                if config_key(params, axes) in read_partial(partial_files(out)):
                    continue  # another process evaluated it meanwhile
                row = evaluate_config(spec, ctx, params, axes)
                done[row["key"]] = row
                f.write(json.dumps(row) + "\n")
                f.flush()
                elapsed = time.perf_counter() - started
                log(
                    f"[{i}/{len(todo)}] {row['key']}: {row['seconds']:.1f} s, "
                    f"final {row['final'].get('accuracy')}/{row['final'].get('conf_sigma')}, "
                    f"eta {elapsed / i * (len(todo) - i) / 60:.1f} min"
                )
    done.update(read_partial(partial_files(out)))
    return done


def write_table(
    out: Path,
    rows: list[dict[str, Any]],
    spec_dict: Mapping[str, Any],
    command: str,
    axes: Mapping[str, Sequence[float]] = AXES,
) -> None:
    table = {
        "meta": {
            "made": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": command,
            "axes": {k: list(v) for k, v in axes.items()},
            "spec": dict(spec_dict),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "n_configs": len(rows),
            "total_seconds": round(sum(r["seconds"] for r in rows), 1),
        },
        "configs": rows,
    }
    with gzip.open(out, "wt", compresslevel=9) as f:
        json.dump(table, f, separators=(",", ":"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--limit", type=int, default=None, help="only the first N grid configs")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--shard", default="0/1", help="i/n: every n-th config from the i-th")
    ap.add_argument("--reverse", action="store_true", help="walk the shard from its end")
    args = ap.parse_args(argv)
    try:
        index, count = (int(x) for x in args.shard.split("/"))
        if not 0 <= index < count:
            raise ValueError
    except ValueError:
        ap.error(f"--shard must be i/n with 0 <= i < n, got {args.shard!r}")
    quiet_logging()
    torch.set_num_threads(args.threads)
    configs = grid_configs()[: args.limit]
    spec_dict = study_spec()
    suffix = f"{index}r" if args.reverse else f"{index}"
    partial = args.out.with_name(f"{args.out.name}.partial-{suffix}.jsonl")
    done = build(spec_dict, configs, partial, shard=(index, count), reverse=args.reverse)
    missing = [c for c in configs if config_key(c, AXES) not in done]
    if missing:
        print(f"{len(missing)} configs are still to do (other shards); no table written yet")
        return 0
    rows = [done[config_key(c, AXES)] for c in configs]
    command = "python bench/kdtable/make_table.py " + " ".join(argv or sys.argv[1:])
    if count > 1:  # every shard's process took part
        command = " & ".join(
            f"python bench/kdtable/make_table.py --shard {i}/{count}" for i in range(count)
        )
    write_table(args.out, rows, spec_dict, command.strip())
    print(f"wrote {args.out} ({len(rows)} configs, {args.out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
