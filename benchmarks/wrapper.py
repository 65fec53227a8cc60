"""What `exitdir lead` / `exitdir follow` cost around a program: start-up, memory, wake-ups while idle."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time

from _common import EXITDIR, PYTHON, Table, median_ms, proc_status, time_command, wait_for_line


def startup(runs: int) -> Table:
    table = Table(
        "Wrapper start-up (median wall time of a whole run, ms)",
        ["command", "median ms", "added over `true` ms"],
    )
    exit_dir = tempfile.mkdtemp()
    try:
        true = median_ms(time_command(["true"], runs))
        bare = median_ms(time_command([PYTHON, "-c", "pass"], runs))
        lead = median_ms(time_command([*EXITDIR, "lead", "-q", "--dir", exit_dir, "--", "true"], runs))
        shutil.rmtree(exit_dir)
        follow = median_ms(time_command([*EXITDIR, "follow", "-q", "--dir", exit_dir, "--", "true"], runs))
    finally:
        shutil.rmtree(exit_dir, ignore_errors=True)
    table.add("`true` (the program alone)", true, "0")
    table.add("`python -c pass` (bare interpreter, the anchor)", bare, bare - true)
    table.add("`exitdir lead -- true` (spawn, reap, write marker)", lead, lead - true)
    table.add("`exitdir follow -- true` (watch, spawn, reap)", follow, follow - true)
    worst = max(lead, follow) - true
    table.goal(
        "wrapper adds under 30 ms",
        worst < 30,
        f"{worst:.1f} ms added, {worst - (bare - true):.1f} ms over a bare interpreter",
    )
    return table


def unguarded(runs: int) -> Table:
    """How long after exec a signal still ends `lead` or `follow` outright (no marker, no lock): until
    `main` has blocked the signals it holds (SigBlk in /proc shows SIGTERM), which is Python's start-up
    and the imports before `main`. Timed from just before the fork, next to a bare interpreter's whole run."""
    table = Table(
        "Start-up window in which a signal ends the wrapper (median of exec to signals held, ms)",
        ["command", "median ms", "max ms"],
    )
    term = 1 << (signal.SIGTERM - 1)
    bare = time_command([PYTHON, "-c", "pass"], runs)
    table.add("`python -c pass` (a whole run, for scale)", median_ms(bare), max(bare) * 1000)
    for mode in ("lead", "follow"):
        samples = []
        for _ in range(runs):
            exit_dir = tempfile.mkdtemp()
            start = time.perf_counter()
            proc = subprocess.Popen(
                [*EXITDIR, mode, "-q", "--dir", exit_dir, "--", "sleep", "60"], stdout=subprocess.DEVNULL
            )
            while proc.poll() is None and not _blocked(proc.pid) & term:
                pass  # spin: a sleep would add its own granularity to what is measured
            samples.append(time.perf_counter() - start)
            proc.send_signal(signal.SIGTERM)
            proc.wait()
            shutil.rmtree(exit_dir)
        table.add(f"`exitdir {mode} -- CMD`", median_ms(samples), max(samples) * 1000)
    return table


def _blocked(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1], 16) for line in f if line.startswith("SigBlk:"))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return 0


def idle(seconds: float) -> Table:
    """RSS and voluntary context switches of a follow wrapper waiting, next to an idle bare interpreter."""
    table = Table(
        f"Wrapper while idle ({seconds:g} s)",
        ["process", "RSS MiB", "voluntary wake-ups", "CPU ms"],
    )
    exit_dir = tempfile.mkdtemp()
    sleeper = "import time; print('ready', flush=True); time.sleep(3600)"
    procs = {
        "`python -c 'sleep'` (bare interpreter)": subprocess.Popen(
            [PYTHON, "-c", sleeper], stdout=subprocess.PIPE
        ),
        "`exitdir follow -- CMD` (inotify)": subprocess.Popen(
            [*EXITDIR, "follow", "-q", "--dir", exit_dir, "--", PYTHON, "-c", sleeper], stdout=subprocess.PIPE
        ),
    }
    try:
        for proc in procs.values():
            wait_for_line(proc)
        time.sleep(0.2)  # let start-up settle before the idle window opens
        before = {name: _counters(proc.pid) for name, proc in procs.items()}
        time.sleep(seconds)
        after = {name: _counters(proc.pid) for name, proc in procs.items()}
        for name, proc in procs.items():
            rss = proc_status(proc.pid, "VmRSS") / 1024
            wakeups = after[name][0] - before[name][0]
            cpu = after[name][1] - before[name][1]
            table.add(name, rss, wakeups, cpu)
        name = "`exitdir follow -- CMD` (inotify)"
        wakeups = after[name][0] - before[name][0]
        table.goal("zero wake-ups while waiting", wakeups == 0, f"{wakeups} in {seconds:g} s")
    finally:
        for proc in procs.values():
            proc.terminate()  # the wrapper forwards it to its child; a KILL would orphan the child
            proc.communicate(timeout=20)
        shutil.rmtree(exit_dir)
    return table


def _counters(pid: int) -> tuple[int, float]:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    import os

    return proc_status(pid, "voluntary_ctxt_switches"), ticks * 1000 / os.sysconf("SC_CLK_TCK")
