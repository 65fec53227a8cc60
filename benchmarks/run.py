"""The benchmark suite: `make bench` (or `python benchmarks/run.py [--quick] [--dir /dev/shm]`). Prints
Markdown tables.

Every figure is measured in this run, on this machine, next to its baseline, so ratios are meaningful even
on a noisy machine. Nothing here is a test: it prints goals and whether they were met.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import follower
import wrapper
from _common import Table, build_go, machine, render_goal


def go_version() -> str:
    result = subprocess.run(["go", "version"], capture_output=True, text=True, check=False)
    return result.stdout.strip() or "Go: version unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer trials, for a smoke run")
    parser.add_argument(
        "--dir",
        default=os.environ.get("EXITDIR_BENCH_DIR"),
        help="where the run's directories go, e.g. /dev/shm (tmpfs: no ext4 inode-allocation noise); "
        "default: the system's temporary directory, or $EXITDIR_BENCH_DIR",
    )
    args = parser.parse_args()
    runs = 10 if args.quick else 40
    # Measure what users run: an installed package has bytecode (pip compiles it). Some machines set
    # PYTHONDONTWRITEBYTECODE, which would make every run here recompile exitdir from source.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    import compileall

    import exitdir

    compileall.compile_dir(str(Path(exitdir.__file__).parent), quiet=1)
    if args.dir is not None and not Path(args.dir).is_dir():
        parser.error(f"--dir {args.dir}: not a directory; give an existing one, such as /dev/shm")
    # One directory for the whole run, under which every section makes its own, deleted only at the end:
    # on ext4 without a journal, inodes freed by a mass delete are skipped for ~40 s and slow every create
    # after it (../shared/notes/latency.md), which would slow the sections that follow.
    base = tempfile.mkdtemp(prefix="exitdir-bench-", dir=args.dir)
    tempfile.tempdir = base
    try:
        return _run(args.quick, runs, base)
    finally:
        tempfile.tempdir = None
        shutil.rmtree(base)


def _run(quick: bool, runs: int, base: str) -> int:
    go = build_go(tempfile.mkdtemp(prefix="go-"))
    trials = tempfile.mkdtemp(prefix="trials-")
    print(f"# exitdir benchmarks, {time.strftime('%Y-%m-%d')}, {machine()}")
    print(f"Directories under {base}; {go_version() if isinstance(go, dict) else 'Go: ' + go}")
    idle_seconds = 2.0 if quick else 10.0
    sections: list[Callable[[], Table]] = [
        lambda: follower.latency(60 if quick else 300, trials, go),
        lambda: follower.first_call(20 if quick else 100, trials, go),
        lambda: follower.idle(idle_seconds),
        lambda: follower.imports(runs),
        lambda: follower.fan_out(50 if quick else 500),
        lambda: follower.polling(1000 if quick else 10000),
        lambda: wrapper.startup(runs),
        lambda: wrapper.unguarded(runs),
        lambda: wrapper.idle(idle_seconds),
    ]
    headline = []
    for section in sections:
        table = section()
        print(table.render(), flush=True)
        headline += table.headline
    print("\n### The goals of issue 15, measured in this run\n")
    print("\n".join(render_goal(goal) for goal in headline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
