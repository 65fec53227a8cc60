"""Shared pieces of the benchmark suite: timing, percentiles, a printed table, goals."""

from __future__ import annotations

import os
import shutil
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
GO_SOURCES = Path(__file__).with_name("go")
GO_PROGRAMS = ("gofollower", "goexit")


def build_go(out: str) -> dict[str, str] | str:
    """Build the Go programs of benchmarks/go into ``out``; their paths by name, or why they cannot be.

    Offline, in GOPATH mode on Debian's /usr/share/gocode (golang-github-fsnotify-fsnotify-dev), as the
    interop tests build tests/go; the build cache goes in ``out`` too, so nothing is left behind.
    """
    go = shutil.which("go")
    if go is None:
        return "no Go toolchain: `make deps` installs golang-go and golang-github-fsnotify-fsnotify-dev"
    env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode", GOCACHE=os.path.join(out, "cache"))
    env.pop("GOFLAGS", None)
    built = {}
    for name in GO_PROGRAMS:
        target = os.path.join(out, name)
        result = subprocess.run(
            [go, "build", "-o", target, f"./{name}"],
            cwd=GO_SOURCES,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
            return f"`go build ./{name}` failed: {lines[-1]}"
        built[name] = target
    return built


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
    goals: list[tuple[str, bool | None, str]] = field(default_factory=list)
    # The goals of issue 15 among them, which run.py repeats in one list at the end.
    headline: list[tuple[str, bool | None, str]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([_cell(c) for c in cells])

    def goal(self, text: str, met: bool | None, measured: str, headline: bool = False) -> None:
        """Record a goal; ``met`` None when it could not be measured (``measured`` then says why)."""
        self.goals.append((text, met, measured))
        if headline:
            self.headline.append((text, met, measured))

    def render(self) -> str:
        lines = [f"\n### {self.title}\n", "| " + " | ".join(self.columns) + " |"]
        lines.append("|" + "---|" * len(self.columns))
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.goals:
            lines.append("")
            lines += [render_goal(goal) for goal in self.goals]
        return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        # Three significant digits, without the exponent that .3g gives from 1000 up.
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def render_goal(goal: tuple[str, bool | None, str]) -> str:
    text, met, measured = goal
    verdict = "not measured" if met is None else "met" if met else "MISSED"
    return f"- goal: {text}: **{verdict}** ({measured})"


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
