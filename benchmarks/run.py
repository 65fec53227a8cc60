"""The benchmark suite: `make bench` (or `python benchmarks/run.py [--quick]`). Prints Markdown tables.

Every figure is measured in this run, on this machine, next to its baseline, so ratios are meaningful even
on a noisy machine. Nothing here is a test: it prints goals and whether they were met.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import follower
import wrapper
from _common import Table, machine


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer trials, for a smoke run")
    args = parser.parse_args()
    runs = 10 if args.quick else 40
    # Measure what users run: an installed package has bytecode (pip compiles it). Some machines set
    # PYTHONDONTWRITEBYTECODE, which would make every run here recompile exitdir from source.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    import compileall

    import exitdir

    compileall.compile_dir(str(Path(exitdir.__file__).parent), quiet=1)
    print(f"# exitdir benchmarks, {time.strftime('%Y-%m-%d')}, {machine()}")
    idle_seconds = 2.0 if args.quick else 10.0
    sections: list[Callable[[], Table]] = [
        lambda: follower.latency(60 if args.quick else 300),
        lambda: follower.idle(idle_seconds),
        lambda: follower.imports(runs),
        lambda: follower.fan_out(50 if args.quick else 500),
        lambda: follower.polling(1000 if args.quick else 10000),
        lambda: wrapper.startup(runs),
        lambda: wrapper.unguarded(runs),
        lambda: wrapper.idle(idle_seconds),
    ]
    for section in sections:
        print(section().render(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
