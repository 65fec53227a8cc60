"""The race soak: `make soak` (10,000 trials; `SOAK_TRIALS=N` for fewer). Not part of the test run.

Each trial makes a fresh exit directory, picks 1-8 follower processes from a pool (half on inotify, half
polling every 10 ms), starts them after random delays of 0-3 ms and writes the marker after another random
delay, so followers start before, during and after the write. It counts:

- misses: a follower that did not trip within 10 s of the marker;
- false trips: a follower that tripped before the marker was written, or in a control trial (one in 20)
  where no marker is ever written;

and prints the trial count and the slowest notify per backend. Both counts must be 0 (exit status 1 if not).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import PYTHON

import exitdir

POOL = 8
MISS_AFTER = 10.0  # seconds; a follower still waiting then has missed the marker
CONTROL_WAIT = 0.05  # seconds a control trial's followers wait for a marker that never comes
WORKER = r"""
import sys, time, exitdir
backend = sys.argv[1]
print("ready", flush=True)
for line in sys.stdin:
    directory, delay, timeout = line.split()
    time.sleep(float(delay))
    with exitdir.aware(directory, backend=backend, poll_interval=0.01) as token:
        tripped = token.wait(float(timeout))
        now = time.monotonic_ns()
    print(f"{'tripped' if tripped else 'timeout'} {now}", flush=True)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=None, help="for a reproducible run")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    rng = random.Random(seed)
    backends = ["inotify", "poll"] * (POOL // 2)
    workers = _start_workers(backends)
    base = tempfile.mkdtemp(prefix="exitdir-soak-")
    misses = false_trips = controls = follower_runs = 0
    slowest = dict.fromkeys(set(backends), 0.0)
    started = time.monotonic()
    try:
        for trial in range(args.trials):
            directory = os.path.join(base, str(trial))
            os.mkdir(directory)
            control = trial % 20 == 19
            chosen = rng.sample(range(POOL), rng.randint(1, POOL))
            for index in chosen:
                worker = workers[index]
                assert worker.stdin is not None
                timeout = CONTROL_WAIT if control else MISS_AFTER
                worker.stdin.write(f"{directory} {rng.uniform(0, 0.003):.6f} {timeout}\n")
                worker.stdin.flush()
            time.sleep(rng.uniform(0, 0.003))
            written = time.monotonic_ns()
            if not control:
                exitdir.exit(directory=directory)
            for index in chosen:
                stdout = workers[index].stdout
                assert stdout is not None
                outcome, stamp = stdout.readline().split()
                follower_runs += 1
                if control:
                    false_trips += outcome == "tripped"
                elif outcome == "timeout":
                    misses += 1
                elif int(stamp) < written:
                    false_trips += 1
                else:
                    backend = backends[index]
                    slowest[backend] = max(slowest[backend], (int(stamp) - written) / 1e6)
            controls += control
            shutil.rmtree(directory)
    finally:
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.close()
            worker.wait(30)
        shutil.rmtree(base, ignore_errors=True)
    print(
        f"# exitdir race soak, {time.strftime('%Y-%m-%d')}, seed {seed}\n"
        f"trials: {args.trials} ({controls} controls without a marker), follower runs: {follower_runs}\n"
        f"misses: {misses}\nfalse trips: {false_trips}"
    )
    for backend, ms in sorted(slowest.items()):
        # For a follower that started after the write, this includes its own start-up and first scan.
        print(f"slowest notify, {backend}: {ms:.2f} ms (leader's exit() to the follower's wait returning)")
    print(f"took {time.monotonic() - started:.0f} s")
    return 0 if misses == 0 and false_trips == 0 else 1


def _start_workers(backends: list[str]) -> list[subprocess.Popen[str]]:
    workers = [
        subprocess.Popen(
            [PYTHON, "-c", WORKER, b], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        for b in backends
    ]
    for worker in workers:
        assert worker.stdout is not None
        assert worker.stdout.readline() == "ready\n"  # imported and listening: trials time only the waits
    return workers


if __name__ == "__main__":
    sys.exit(main())
