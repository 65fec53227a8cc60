"""The follower's costs: notify latency, idle wake-ups, import time, memory, fan-out, polling."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _common import PYTHON, Table, median_ms, percentile, proc_status, time_command, wait_for_line

import exitdir
from exitdir._marker import list_markers

FOLLOWER = str(Path(__file__).with_name("_follower.py"))
POLL_BENCH_INTERVAL = 0.01


class _Follower:
    """One follower process of the latency benchmark, driven a trial at a time."""

    def __init__(self, mode: list[str], leader: str) -> None:
        self.leader = leader
        self.proc = subprocess.Popen(
            [PYTHON, FOLLOWER, *mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.samples: list[float] = []

    def trial(self, directory: str, keep: bool) -> None:
        """Microseconds from the leader's call to the follower's wait returning."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        os.mkdir(directory)
        self.proc.stdin.write(directory + "\n")
        assert self.proc.stdout.readline() == "ready\n"
        start = time.monotonic_ns()
        if self.leader == "exit":
            exitdir.exit(directory=directory)
        else:
            os.close(os.open(os.path.join(directory, "exitFile"), os.O_CREAT | os.O_WRONLY, 0o644))
        done = int(self.proc.stdout.readline())
        if keep:
            self.samples.append((done - start) / 1000)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(20)


def latency(trials: int) -> Table:
    table = Table(
        f"Notify latency, leader call to follower wake-up, cross-process ({trials} trials each, µs)",
        ["follower", "leader", "p50 µs", "p99 µs", "p50 / floor"],
    )
    floor_name = "raw ctypes inotify, blocking read (the floor)"
    sync_name = "sync `ExitToken.wait()` (inotify)"
    async_name = "asyncio `wait_for_exit()` (inotify)"
    poll_name = f"`ExitToken.wait()`, poll backend every {POLL_BENCH_INTERVAL:g} s"
    followers = {
        floor_name: _Follower(["raw"], "open"),
        sync_name: _Follower(["token"], "exit"),
        async_name: _Follower(["async"], "exit"),
        # The two halves of the gap between our path and the floor: our leader alone, our follower alone.
        "raw follower (the floor's)": _Follower(["raw"], "exit"),
        "sync `ExitToken.wait()` (inotify) ": _Follower(["token"], "open"),
        poll_name: _Follower(["poll", str(POLL_BENCH_INTERVAL)], "exit"),
    }
    base = tempfile.mkdtemp(dir=os.environ.get("EXITDIR_BENCH_DIR"))
    try:
        # Round-robin, one trial of each in turn: the host's load drifts over seconds, and interleaving
        # makes every follower see the same conditions, so the ratios to the floor stay meaningful.
        for i in range(trials + 10):  # the first 10 warm caches up and are dropped
            for n, follower in enumerate(followers.values()):
                follower.trial(os.path.join(base, f"{i}-{n}"), keep=i >= 10)
    finally:
        for follower in followers.values():
            follower.close()
        shutil.rmtree(base)
    floor = statistics.median(followers[floor_name].samples)
    for name, follower in followers.items():
        p50 = statistics.median(follower.samples)
        leader = "`os.open(O_CREAT)`" if follower.leader == "open" else "`exitdir.exit()`"
        table.add(name, leader, p50, percentile(follower.samples, 0.99), f"{p50 / floor:.2f}")
    sync, asyn = followers[sync_name].samples, followers[async_name].samples
    table.goal(
        "sync p50 within 1.5x the floor",
        statistics.median(sync) <= 1.5 * floor,
        f"{statistics.median(sync) / floor:.2f}x",
    )
    table.goal(
        "asyncio p50 within 2.5x the floor",
        statistics.median(asyn) <= 2.5 * floor,
        f"{statistics.median(asyn) / floor:.2f}x",
    )
    table.goal("sync p99 under 1 ms", percentile(sync, 0.99) < 1000, f"{percentile(sync, 0.99):.0f} µs")
    return table


def _counters(pid: int) -> tuple[int, float]:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return proc_status(pid, "voluntary_ctxt_switches"), (
        int(fields[11]) + int(fields[12])
    ) * 1000 / os.sysconf("SC_CLK_TCK")


def idle(seconds: float) -> Table:
    table = Table(
        f"A waiting follower over {seconds:g} s with nothing happening",
        ["follower", "voluntary wake-ups", "CPU ms", "RSS MiB", "RSS over bare MiB"],
    )
    directory = tempfile.mkdtemp()
    shared = tempfile.mkdtemp()
    programs = {
        "bare interpreter, `time.sleep`": "import time\nprint('ready', flush=True)\ntime.sleep(3600)",
        "sync `aware().wait()` (inotify)": (
            f"import exitdir\nt = exitdir.aware({directory!r})\nprint('ready', flush=True)\nt.wait()"
        ),
        "asyncio `wait_for_exit()` (inotify)": (
            "import asyncio, exitdir\n"
            "async def main():\n"
            f"    task = asyncio.create_task(exitdir.wait_for_exit({directory!r}))\n"
            "    await asyncio.sleep(0)\n"
            "    print('ready', flush=True)\n"
            "    await task\n"
            "asyncio.run(main())"
        ),
        "a program already using json and threading": (
            "import json, threading, time\nprint('ready', flush=True)\ntime.sleep(3600)"
        ),
        "the same program, plus a sync follower (inotify)": (
            f"import json, threading, exitdir\nt = exitdir.aware({directory!r})\n"
            "print('ready', flush=True)\nt.wait()"
        ),
        # Not in the directory above: each of its listings wakes the inotify followers of its directory,
        # which the next row shows.
        "sync `aware(backend='poll').wait()`, default 0.25 s": (
            f"import exitdir\nt = exitdir.aware({shared!r}, backend='poll')\n"
            "print('ready', flush=True)\nt.wait()"
        ),
        "sync `aware().wait()` (inotify), beside that poll follower": (
            f"import exitdir\nt = exitdir.aware({shared!r})\nprint('ready', flush=True)\nt.wait()"
        ),
    }
    procs = {
        name: subprocess.Popen([PYTHON, "-c", code], stdout=subprocess.PIPE)
        for name, code in programs.items()
    }
    try:
        for proc in procs.values():
            wait_for_line(proc)
        time.sleep(0.5)
        before = {name: _counters(proc.pid) for name, proc in procs.items()}
        time.sleep(seconds)
        after = {name: _counters(proc.pid) for name, proc in procs.items()}
        bare_rss = proc_status(procs["bare interpreter, `time.sleep`"].pid, "VmRSS") / 1024
        for name, proc in procs.items():
            rss = proc_status(proc.pid, "VmRSS") / 1024
            table.add(
                name, after[name][0] - before[name][0], after[name][1] - before[name][1], rss, rss - bare_rss
            )
        sync = "sync `aware().wait()` (inotify)"
        wakeups = after[sync][0] - before[sync][0]
        table.goal("zero idle wake-ups on inotify", wakeups == 0, f"{wakeups} in {seconds:g} s")
        rss_over = (proc_status(procs[sync].pid, "VmRSS") / 1024) - bare_rss
        table.goal("follower RSS under 1 MiB over a bare interpreter", rss_over < 1, f"{rss_over:.2f} MiB")
        marginal = (
            proc_status(procs["the same program, plus a sync follower (inotify)"].pid, "VmRSS")
            - proc_status(procs["a program already using json and threading"].pid, "VmRSS")
        ) / 1024
        table.goal(
            "(context) follower RSS in a program already using json and threading",
            marginal < 1,
            f"{marginal:.2f} MiB",
        )
    finally:
        for proc in procs.values():
            proc.kill()
            proc.communicate()
        shutil.rmtree(directory)
        shutil.rmtree(shared)
    return table


def imports(runs: int) -> Table:
    table = Table(f"Start-up cost (median of {runs} runs, ms)", ["command", "median ms", "over bare ms"])
    directory = tempfile.mkdtemp()
    try:
        bare = median_ms(time_command([PYTHON, "-c", "pass"], runs))
        plain = median_ms(time_command([PYTHON, "-c", "import exitdir"], runs))
        follower = median_ms(
            time_command([PYTHON, "-c", f"import exitdir; exitdir.aware({directory!r}).is_set()"], runs)
        )
        leader = median_ms(
            time_command([PYTHON, "-c", f"import exitdir; exitdir.exit(directory={directory!r})"], runs)
        )
    finally:
        shutil.rmtree(directory)
    table.add("`python -c pass`", bare, "0")
    table.add("`import exitdir`", plain, plain - bare)
    table.add("`import exitdir` + `aware(d).is_set()` (ctypes, inotify set-up)", follower, follower - bare)
    table.add("`import exitdir` + `exit(directory=d)` (json, marker write)", leader, leader - bare)
    table.goal("`import exitdir` under 3 ms over bare", plain - bare < 3, f"{plain - bare:.2f} ms")
    return table


_FAN_OUT_EXITDIR = """
import sys, time, exitdir
t = exitdir.aware({directory!r})
print('ready', flush=True)
t.wait()
print(time.monotonic_ns(), flush=True)
sys.stdin.read()
"""
_FAN_OUT_RAW = """
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(os.O_CLOEXEC)
libc.inotify_add_watch(fd, {directory!r}.encode(), 0x100)
print('ready', flush=True)
os.read(fd, 4096)
print(time.monotonic_ns(), flush=True)
sys.stdin.read()
"""


def _fan_out_once(count: int, template: str) -> list[float]:
    """Milliseconds from the marker's creation to each follower's wake-up."""
    directory = tempfile.mkdtemp()
    # Each follower records when its wait returned, then stays parked: the goal is about notification, and
    # interpreters tearing down at once (several ms of CPU each) would delay the ones not yet woken.
    code = template.format(directory=directory)
    procs = []
    try:
        for _ in range(count):
            procs.append(
                subprocess.Popen(
                    [PYTHON, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
                )
            )
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n"
        time.sleep(1)  # let the machine settle after starting them all
        start = time.monotonic_ns()
        exitdir.exit(directory=directory)
        woke = []
        for proc in procs:
            assert proc.stdout is not None
            woke.append((int(proc.stdout.readline()) - start) / 1e6)
    finally:
        for proc in procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in procs:
            proc.wait()
        shutil.rmtree(directory)
    return woke


_MAX_INSTANCES = "/proc/sys/fs/inotify/max_user_instances"


def fan_out(count: int) -> Table:
    """Followers on one directory. inotify instances are limited per user (128 by default on a node), so
    beyond that exitdir followers poll; with the limit raised (as node operators do) all use inotify."""
    table = Table(
        f"Fan-out: {count} follower processes on one directory (ms after the marker appeared)",
        ["followers", "first", "median", "p90", "last", "spread first to last"],
    )
    default_limit = int(Path(_MAX_INSTANCES).read_text())
    results: dict[str, list[float]] = {}
    if count > default_limit - 16:
        results[f"exitdir, node default max_user_instances={default_limit} (the rest poll)"] = _fan_out_once(
            count, _FAN_OUT_EXITDIR
        )
    raised = False
    try:
        if count > default_limit - 16:
            try:
                Path(_MAX_INSTANCES).write_text(str(count + 64))  # root only; restored below
                raised = True
            except OSError as err:
                print(f"(cannot raise {_MAX_INSTANCES}: {err.strerror}; run as root for all-inotify rows)")
        limit = f"max_user_instances={count + 64}" if raised else f"max_user_instances={default_limit}"
        results[f"raw ctypes inotify, blocking read (baseline), {limit}"] = _fan_out_once(count, _FAN_OUT_RAW)
        results[f"exitdir `aware().wait()`, {limit}"] = _fan_out_once(count, _FAN_OUT_EXITDIR)
    finally:
        if raised:
            Path(_MAX_INSTANCES).write_text(str(default_limit))
    for name, woke in results.items():
        table.add(
            name, min(woke), statistics.median(woke), percentile(woke, 0.9), max(woke), max(woke) - min(woke)
        )
    ours = list(results.values())[-1]
    spread = max(ours) - min(ours)
    table.goal(f"all {count} within 50 ms of each other (all on inotify)", spread < 50, f"{spread:.1f} ms")
    return table


def polling(iterations: int) -> Table:
    table = Table(
        "Polling cost: one scan of the exit directory (the work of one poll)",
        ["directory holds", "µs per poll"],
    )
    directory = tempfile.mkdtemp()
    try:
        for label, entries in (
            ("nothing", 0),
            ("10 non-marker entries", 10),
            ("100 non-marker entries", 100),
        ):
            for i in range(entries):
                Path(directory, f".noise-{label[:3]}-{i}").write_bytes(b"")
            start = time.perf_counter()
            for _ in range(iterations):
                list_markers(directory)
            table.add(label, (time.perf_counter() - start) / iterations * 1e6)
    finally:
        shutil.rmtree(directory)
    per_second = 1 / 0.25
    table.add(f"at the default interval (0.25 s): {per_second:g} polls/s", "see the idle table for CPU")
    return table
