"""Shared pieces of the benchmark suite: timing, percentiles, a printed table, goals."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

PYTHON = sys.executable
# The console script, as users run it (`python -m exitdir` adds runpy's ~3 ms).
EXITDIR = [str(Path(PYTHON).with_name("exitdir"))]


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def time_command(argv: Sequence[str], runs: int, env: dict[str, str] | None = None) -> list[float]:
    """Wall-clock seconds of each of ``runs`` runs of ``argv`` (after one warm-up run)."""
    samples = []
    for i in range(runs + 1):
        start = time.perf_counter()
        subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
        if i:
            samples.append(time.perf_counter() - start)
    return samples


def proc_status(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def wait_for_line(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> bytes:
    """Read one line of a child's stdout (the ready handshake), failing after ``timeout``."""
    import select

    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError(f"no line from {proc.args!r} within {timeout} s")
    return proc.stdout.readline()


@dataclass
class Table:
    title: str
    columns: Sequence[str]
    rows: list[Sequence[str]] = field(default_factory=list)
    goals: list[tuple[str, bool, str]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append(
            [c if isinstance(c, str) else f"{c:.3g}" if isinstance(c, float) else str(c) for c in cells]
        )

    def goal(self, text: str, met: bool, measured: str) -> None:
        self.goals.append((text, met, measured))

    def render(self) -> str:
        lines = [f"\n### {self.title}\n", "| " + " | ".join(self.columns) + " |"]
        lines.append("|" + "---|" * len(self.columns))
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.goals:
            lines.append("")
            lines += [
                f"- goal: {text}: **{'met' if met else 'MISSED'}** ({measured})"
                for text, met, measured in self.goals
            ]
        return "\n".join(lines)


def median_ms(samples: Sequence[float]) -> float:
    return statistics.median(samples) * 1000


def machine() -> str:
    return (
        f"{os.uname().sysname} {os.uname().release}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"
    )


def run_quietly(fn: Callable[[], Table]) -> Table:
    table = fn()
    print(table.render(), flush=True)
    return table
