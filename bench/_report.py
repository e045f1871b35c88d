"""Shared by the benchmarks: the machine line and the sections of ``bench/RESULTS.md``."""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform's guess elsewhere)."""
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        names = [x for x in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in x]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    return cpu


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
