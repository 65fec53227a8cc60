"""The race soak: `make soak` (10,000 trials; `SOAK_TRIALS=N` for fewer). Not part of the test run.

Each trial makes a fresh exit directory, picks 1-8 follower processes from a pool (half on inotify, half
polling, every 10 ms or every 0.1 ms), starts them after random delays of 0-3 ms and writes the marker after
another random delay, so followers start before, during and after the write. In one trial in four the
leader holds its liveness lock from before the followers start, and finishes as a leader does: marker
first, then the lock released. It counts:

- misses: a follower that did not trip within 10 s of the marker;
- false trips: a follower that tripped before the marker was written, or in a control trial (one in 20)
  where no marker is ever written;
- false crashes: a follower of a locked trial that reported the leader as vanished (crashed) although it
  wrote its marker: the lock went between the follower's listing and its look at the locks, and the
  follower did not look for the marker again;

and prints the trial count and the slowest notify per follower kind. All three must be 0 (exit status 1 if
not).
"""

from __future__ import annotations

import argparse
import contextlib
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
backend, interval = sys.argv[1], float(sys.argv[2])
print("ready", flush=True)
for line in sys.stdin:
    directory, delay, timeout = line.split()
    time.sleep(float(delay))
    with exitdir.aware(directory, backend=backend, poll_interval=interval) as token:
        tripped = token.wait(float(timeout))
        now = time.monotonic_ns()
    kind = token.marker.kind if token.marker is not None else "-"
    print(f"{'tripped' if tripped else 'timeout'} {now} {kind}", flush=True)
"""


class Tally:
    """What the trials found, per follower run."""

    def __init__(self, labels: list[str]) -> None:
        self.labels = labels
        self.misses = self.false_trips = self.false_crashes = self.controls = self.locked = self.runs = 0
        self.slowest = dict.fromkeys(set(labels), 0.0)

    def count(self, index: int, report: str, *, control: bool, written: int) -> None:
        outcome, stamp, kind = report.split()
        self.runs += 1
        if control:
            self.false_trips += outcome == "tripped"
        elif outcome == "timeout":
            self.misses += 1
        elif int(stamp) < written:
            self.false_trips += 1
        elif kind == "vanished":
            self.false_crashes += 1
        else:
            label = self.labels[index]
            self.slowest[label] = max(self.slowest[label], (int(stamp) - written) / 1e6)


def trial(
    number: int, directory: str, workers: list[subprocess.Popen[str]], rng: random.Random, tally: Tally
) -> None:
    control = number % 20 == 19
    locked = number % 4 == 1
    leadership = contextlib.ExitStack()
    if locked:
        # The lock is held before any follower starts, so every follower sees the leader running.
        leadership.enter_context(exitdir.leader(directory=directory))
    chosen = rng.sample(range(POOL), rng.randint(1, POOL))
    for index in chosen:
        stdin = workers[index].stdin
        assert stdin is not None
        timeout = CONTROL_WAIT if control else MISS_AFTER
        stdin.write(f"{directory} {rng.uniform(0, 0.003):.6f} {timeout}\n")
        stdin.flush()
    time.sleep(rng.uniform(0, 0.003))
    written = time.monotonic_ns()
    if locked:
        leadership.close()  # as a leader's block ends: the marker, then the lock released
    elif not control:
        exitdir.exit(directory=directory)
    for index in chosen:
        stdout = workers[index].stdout
        assert stdout is not None
        tally.count(index, stdout.readline(), control=control, written=written)
    tally.controls += control
    tally.locked += locked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=None, help="for a reproducible run")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    rng = random.Random(seed)
    kinds = [("inotify", "0.01"), ("poll", "0.01"), ("inotify", "0.01"), ("poll", "0.0001")] * (POOL // 4)
    workers = _start_workers(kinds)
    base = tempfile.mkdtemp(prefix="exitdir-soak-")
    tally = Tally([f"{backend} ({float(interval) * 1000:g} ms)" for backend, interval in kinds])
    started = time.monotonic()
    try:
        for number in range(args.trials):
            directory = os.path.join(base, str(number))
            os.mkdir(directory)
            trial(number, directory, workers, rng, tally)
            shutil.rmtree(directory)
    finally:
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.close()
            worker.wait(30)
        shutil.rmtree(base, ignore_errors=True)
    print(
        f"# exitdir race soak, {time.strftime('%Y-%m-%d')}, seed {seed}\n"
        f"trials: {args.trials} ({tally.controls} controls without a marker, {tally.locked} with a "
        f"leader's lock), follower runs: {tally.runs}\n"
        f"misses: {tally.misses}\nfalse trips: {tally.false_trips}\nfalse crashes: {tally.false_crashes}"
    )
    for label, ms in sorted(tally.slowest.items()):
        # For a follower that started after the write, this includes its own start-up and first scan.
        print(f"slowest notify, {label}: {ms:.2f} ms (leader's exit() to the follower's wait returning)")
    print(f"took {time.monotonic() - started:.0f} s")
    failures = tally.misses + tally.false_trips + tally.false_crashes
    return 0 if failures == 0 else 1


def _start_workers(kinds: list[tuple[str, str]]) -> list[subprocess.Popen[str]]:
    workers = [
        subprocess.Popen(
            [PYTHON, "-c", WORKER, backend, interval],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        for backend, interval in kinds
    ]
    for worker in workers:
        assert worker.stdout is not None
        assert worker.stdout.readline() == "ready\n"  # imported and listening: trials time only the waits
    return workers


if __name__ == "__main__":
    sys.exit(main())
