"""Run as the program of a wrapper: start a process outside the program's process group, as daemons do.

    stray.py setsid [OPTIONS]   the stray calls setsid() (its own session and group); this program keeps
                                running until it is signalled
    stray.py daemon [OPTIONS]   the classic double fork: the stray is orphaned, and this program exits 0

Options, for the stray:
    ignore          ignore SIGTERM (only SIGKILL ends it)
    report=PATH     with each signal, say whether PATH exists ("TERM, PATH missing" or "TERM, PATH exists")
    lock=PATH       once ready, take a write lock on PATH and wait for it (blocks while someone holds it)

This program prints `stray PID`, then `ready` once the stray has its signals set up. The stray then prints
the name of each signal it receives, one per line, and exits 0 after SIGTERM unless told to ignore it.
Both write to the inherited stdout.
"""

from __future__ import annotations

import os
import signal
import sys

mode, options = sys.argv[1], sys.argv[2:]
ignore_term = "ignore" in options
report = next((o.removeprefix("report=") for o in options if o.startswith("report=")), None)
lock = next((o.removeprefix("lock=") for o in options if o.startswith("lock=")), None)


def stray(ready: int) -> None:
    """The stray itself: tell the program its pid once signals are set up, then print what arrives."""
    os.setsid()
    catchable = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}
    if ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        catchable.discard(signal.SIGTERM)
    # Blocked and collected with sigwaitinfo: no handler races, and default-ignored signals are seen too.
    signal.pthread_sigmask(signal.SIG_BLOCK, catchable)
    os.write(ready, f"{os.getpid()}\n".encode())
    os.close(ready)
    if lock is not None:
        import fcntl

        fd = os.open(lock, os.O_RDWR)
        fcntl.lockf(fd, fcntl.LOCK_EX)  # on a FUSE mount whose server waits: stuck in the kernel
    while True:
        info = signal.sigwaitinfo(catchable)
        name = signal.Signals(info.si_signo).name.removeprefix("SIG")
        if report is not None:
            name += f", {report} {'exists' if os.path.exists(report) else 'missing'}"
        print(name, flush=True)
        if info.si_signo == signal.SIGTERM:
            sys.exit(0)


read_end, write_end = os.pipe()
if os.fork() == 0:
    os.close(read_end)
    if mode == "daemon" and os.fork() != 0:
        os._exit(0)  # the middle of the double fork: the stray below is orphaned
    stray(write_end)
    os._exit(0)
os.close(write_end)
if mode == "daemon":
    os.wait()  # the middle process
with os.fdopen(read_end) as ready:
    pid = int(ready.readline())
print(f"stray {pid}", flush=True)
print("ready", flush=True)
if mode == "setsid":
    while True:
        signal.pause()  # until a signal ends this program (SIGTERM's default action)
