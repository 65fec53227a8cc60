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

    def __init__(self, argv: list[str], leader: str) -> None:
        self.leader = leader
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.samples: list[float] = []

    def watch(self, directory: str) -> None:
        """Hand the follower a fresh directory and wait until it says it watches it."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        os.mkdir(directory)
        self.proc.stdin.write(directory + "\n")
        line = self.proc.stdout.readline()
        assert line == "ready\n", f"{self.proc.args!r} said {line!r}"

    def noticed(self) -> int:
        """CLOCK_MONOTONIC ns at which the follower's wait returned."""
        assert self.proc.stdout is not None
        return int(self.proc.stdout.readline())

    def trial(self, directory: str, keep: bool) -> None:
        """Microseconds from the leader's call to the follower's wait returning."""
        self.watch(directory)
        start = time.monotonic_ns()
        if self.leader == "exit":
            exitdir.exit(directory=directory)
        else:
            # Go exitdir's Exit(): an empty file, created in place.
            os.close(os.open(os.path.join(directory, "exitFile"), os.O_CREAT | os.O_WRONLY, 0o644))
        done = self.noticed()
        if keep:
            self.samples.append((done - start) / 1000)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(20)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or denominator is None else numerator / denominator


def _ratio_goal(
    table: Table, text: str, *, ours: float | None, go: float | None, bound: float, why: str
) -> None:
    """A goal of the form "ours ≤ bound x Go", or not measured (``why``) when Go could not be built."""
    if ours is None or go is None:
        table.goal(text, None, why, headline=True)
    else:
        ratio = ours / go
        table.goal(text, ratio <= bound, f"{ratio:.2f}x: {ours:.0f} µs against Go's {go:.0f}", headline=True)


_LEADERS = {"open": "`os.open(O_CREAT)` (Go's `Exit()`)", "exit": "`exitdir.exit()`"}


def latency(trials: int, base: str, go: dict[str, str] | str) -> Table:
    """Every follower against both leaders, one trial of each row in turn. ``base`` holds the trial
    directories, which stay until the run ends (mass deletes slow the next creates on ext4: latency.md);
    ``go`` is the built Go programs, or why there are none."""
    table = Table(
        f"Notify latency, leader call to follower wake-up, cross-process ({trials} trials each, µs)",
        ["follower", "leader", "p50 µs", "p90 µs", "p99 µs", "p50 / floor", "p50 / Go, same leader"],
    )
    raw = "raw ctypes inotify, blocking read (the floor)"
    sync = "sync `ExitToken.wait()` (inotify)"
    asyn = "asyncio `wait_for_exit()` (inotify)"
    gof = "Go exitdir `Aware()` (fsnotify)"
    poll = f"`ExitToken.wait()`, poll backend every {POLL_BENCH_INTERVAL:g} s"
    argvs = {
        raw: [PYTHON, FOLLOWER, "raw"],
        sync: [PYTHON, FOLLOWER, "token"],
        asyn: [PYTHON, FOLLOWER, "async"],
    }
    if isinstance(go, dict):
        argvs[gof] = [go["gofollower"]]
    base = tempfile.mkdtemp(prefix="latency-", dir=base)
    followers = {
        (name, leader): _Follower(argv, leader) for name, argv in argvs.items() for leader in _LEADERS
    }
    followers[poll, "exit"] = _Follower([PYTHON, FOLLOWER, "poll", str(POLL_BENCH_INTERVAL)], "exit")
    try:
        # Round-robin, one trial of each in turn: the host's load drifts over seconds, and interleaving
        # makes every follower see the same conditions, so the ratios stay meaningful.
        for i in range(trials + 10):  # the first 10 warm caches up and are dropped
            for n, follower in enumerate(followers.values()):
                follower.trial(os.path.join(base, f"latency-{i}-{n}"), keep=i >= 10)
    finally:
        for follower in followers.values():
            follower.close()

    def p50(name: str, leader: str) -> float | None:
        follower = followers.get((name, leader))
        return statistics.median(follower.samples) if follower else None

    for (name, leader), follower in followers.items():
        samples = follower.samples
        median = statistics.median(samples)
        go_ratio = _ratio(median, p50(gof, leader))
        table.add(
            name,
            _LEADERS[leader],
            median,
            percentile(samples, 0.9),
            percentile(samples, 0.99),
            f"{median / statistics.median(followers[raw, 'open'].samples):.2f}",
            "—" if go_ratio is None else f"{go_ratio:.2f}",
        )
    if isinstance(go, str):
        table.add(gof, "both", f"not measured: {go}", "", "", "", "")
    why = f"no Go row: {go}" if isinstance(go, str) else ""
    go_open = p50(gof, "open")
    _ratio_goal(
        table,
        "follower half: sync `wait()` p50 ≤ 1.1x Go `Aware()` (same bare-create leader)",
        ours=p50(sync, "open"),
        go=go_open,
        bound=1.1,
        why=why,
    )
    _ratio_goal(
        table,
        "follower half: asyncio p50 ≤ 1.4x Go `Aware()` (same bare-create leader)",
        ours=p50(asyn, "open"),
        go=go_open,
        bound=1.4,
        why=why,
    )
    _ratio_goal(
        table,
        "end to end: `exitdir.exit()` → sync `wait()` p50 ≤ 1.6x bare create → Go `Aware()`",
        ours=p50(sync, "exit"),
        go=go_open,
        bound=1.6,
        why=why,
    )
    sync_exit = followers[sync, "exit"].samples
    table.goal(
        "sync p99 under 1 ms", percentile(sync_exit, 0.99) < 1000, f"{percentile(sync_exit, 0.99):.0f} µs"
    )
    return table


# A real leader: binds `exit` at start-up (the documented pattern), works, then calls it once at the end.
_FIRST_CALL_BOUND = """
import sys, time
from exitdir import exit
directory = sys.argv[1]
start = time.monotonic_ns()
exit(directory=directory)
print(start)
"""
# The same leader looking `exit` up only at the call, as the seed does: the lookup's imports are timed.
_FIRST_CALL_LATE = """
import sys, time
import exitdir
directory = sys.argv[1]
start = time.monotonic_ns()
exitdir.exit(directory=directory)
print(start)
"""


def first_call(trials: int, base: str, go: dict[str, str] | str) -> Table:
    """A fresh leader process's one and only call, timed from just before it (the leader's own stamp) to a
    warm follower's wake-up. The follower is the floor's, the same process for every row, so the rows differ
    only in the leader."""
    table = Table(
        f"First call: a fresh leader's only call to a warm raw follower noticing ({trials} trials each, µs)",
        ["leader", "p50 µs", "p90 µs", "p99 µs", "p50 / Go"],
    )
    gol = "Go, first act after start-up `os.Create` (Go exitdir's `Exit()`)"
    bound = "Python, `from exitdir import exit` at start, then one `exit(directory=d)`"
    late = "(context) Python, `import exitdir` at start, then one `exitdir.exit(directory=d)`"
    leaders = {bound: [PYTHON, "-c", _FIRST_CALL_BOUND], late: [PYTHON, "-c", _FIRST_CALL_LATE]}
    if isinstance(go, dict):
        leaders = {gol: [go["goexit"]], **leaders}
    follower = _Follower([PYTHON, FOLLOWER, "raw"], "none")
    base = tempfile.mkdtemp(prefix="first-call-", dir=base)
    samples: dict[str, list[float]] = {name: [] for name in leaders}
    try:
        for i in range(trials + 3):  # the first 3 warm the follower and the page cache, and are dropped
            for n, (name, argv) in enumerate(leaders.items()):
                directory = os.path.join(base, f"first-{i}-{n}")
                follower.watch(directory)
                out = subprocess.run(
                    [*argv, directory], stdout=subprocess.PIPE, text=True, check=True, timeout=20
                )
                done = follower.noticed()
                if i >= 3:
                    samples[name].append((done - int(out.stdout)) / 1000)
    finally:
        follower.close()
    go_p50 = statistics.median(samples[gol]) if gol in samples else None
    for name, values in samples.items():
        median = statistics.median(values)
        ratio = _ratio(median, go_p50)
        table.add(
            name,
            median,
            percentile(values, 0.9),
            percentile(values, 0.99),
            "—" if ratio is None else f"{ratio:.2f}",
        )
    if isinstance(go, str):
        table.add(gol, f"not measured: {go}", "", "", "")
    ours = statistics.median(samples[bound])
    _ratio_goal(
        table,
        "first call ≤ 3x Go's first `Exit()` (p50)",
        ours=ours,
        go=go_p50,
        bound=3.0,
        why=f"no Go row: {go}" if isinstance(go, str) else "",
    )
    table.goal("first call under 0.5 ms (p50)", ours < 500, f"{ours:.0f} µs", headline=True)
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
        table.goal(
            "zero idle wake-ups (sync inotify follower)",
            wakeups == 0,
            f"{wakeups} in {seconds:g} s",
            headline=True,
        )
        rss_over = (proc_status(procs[sync].pid, "VmRSS") / 1024) - bare_rss
        table.goal(
            "follower RSS ≤ 1 MiB over a bare interpreter",
            rss_over <= 1,
            f"{rss_over:.2f} MiB",
            headline=True,
        )
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
    table.add("`import exitdir` + `exit(directory=d)` (marker encode and write)", leader, leader - bare)
    table.goal(
        "`import exitdir` ≤ 1 ms over bare", plain - bare <= 1, f"{plain - bare:.2f} ms", headline=True
    )
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
    raw = list(results.values())[-2]
    raw_spread = max(raw) - min(raw)
    table.goal(
        f"fan-out of {count}: spread ≤ 2x the raw-inotify followers' spread",
        spread <= 2 * raw_spread,
        f"{spread / raw_spread:.2f}x: {spread:.1f} ms against {raw_spread:.1f}",
        headline=True,
    )
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
