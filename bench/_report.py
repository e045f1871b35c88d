"""Shared by the benchmarks: the machine line, the section's header, and the sections of
``bench/RESULTS.md``."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from types import ModuleType
from typing import Any


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform's guess elsewhere)."""
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        names = [x for x in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in x]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    return cpu


def loadavg() -> float | None:
    """The 1-minute load average, or None where the platform has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def versions(*modules: ModuleType) -> list[str]:
    """``"<distribution> <version>"`` of each module, e.g. ``optuna-dashboard 0.17.0``."""
    return [f"{m.__name__.replace('_', '-')} {getattr(m, '__version__', '?')}" for m in modules]


def machine(cores: str, *parts: str, load: tuple[float | None, float | None] | None = None) -> str:
    """``<CPU>, <n> cores<cores>; <parts>; Python <version>``, then the 1-min load average at
    start (when known) and at end (when ``load`` is given and its end is known)."""
    text = f"{cpu_model()}, {os.cpu_count()} cores{cores}; "
    text += "; ".join([*parts, f"Python {platform.python_version()}"])
    if load is not None and load[1] is not None:
        start = "" if load[0] is None else f"{load[0]:.2f} at start, "
        text += f"; 1-min load average {start}{load[1]:.2f} at end"
    return text


def command(argv: list[str] | None = None) -> str:
    """The command as run (``sys.argv`` by default), with this Python relative to the working
    folder when it lies below it."""
    exe = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else "python"
    return shlex.join([exe, *(sys.argv if argv is None else argv)])


def header(
    heading: str,
    machine: str,
    runtime: str | None = None,
    *,
    argv: list[str] | None = None,
    date: str | None = None,
) -> list[str]:
    """A section's first lines: the heading, then date (now by default), machine, command and,
    when given, runtime, each a line of its own (markdown's two-space line break)."""
    date = date or dt.datetime.now().astimezone().isoformat(timespec="seconds")
    lines = [heading, "", f"Date: {date}  ", f"Machine: {machine}  ", f"Command: `{command(argv)}`"]
    if runtime is not None:
        lines[-1] += "  "
        lines.append(f"Runtime: {runtime}")
    return lines


def add_output_args(p: argparse.ArgumentParser, json_help: str) -> None:
    """``--write`` and ``--json``: where ``publish`` puts the section and the raw figures."""
    p.add_argument("--write", type=Path, help="markdown file to put the section in")
    p.add_argument("--json", type=Path, help=json_help)


def publish(
    heading: str, body: str, write: Path | None, dump: Path | None, payload: dict[str, Any]
) -> None:
    """Print the section; with ``--json`` dump ``payload`` to ``dump``, with ``--write`` put
    the section in the markdown file ``write``."""
    print(body)
    if dump:
        dump.parent.mkdir(parents=True, exist_ok=True)
        dump.write_text(json.dumps(payload, indent=2, default=str))
        print(f"wrote {dump}")
    if write:
        write_section(write, heading, body)
        print(f"wrote {heading!r} to {write}")


def write_section(path: Path, heading: str, body: str) -> None:
    """Replace (or append) the section under ``heading``, keeping the file's other sections."""
    lines = path.read_text().splitlines() if path.is_file() else []
    if not any(line.startswith("# ") for line in lines):
        lines = ["# Benchmark results", "", *lines]
    new = body.rstrip("\n").splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
    if start is None:
        while lines and not lines[-1].strip():
            lines.pop()
        lines += ["", *new]
    else:
        after = range(start + 1, len(lines))
        end = next((j for j in after if lines[j].startswith(("# ", "## "))), len(lines))
        lines[start:end] = [*new, ""] if end < len(lines) else new
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
