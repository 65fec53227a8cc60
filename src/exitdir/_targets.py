"""Stopping processes we did not start: the programs a stop-only follower ends when the marker appears.

Such a follower runs beside its targets (a pod with ``shareProcessNamespace: true``), not above them, so
they are not its children. It finds them in /proc, by program name (:func:`find`) or through a pid file
(:func:`from_pid_file`), and :func:`stop` sends the stop signal, waits up to the grace for the target to
be gone, then SIGKILLs it and waits again, always within a bound.

What can and cannot be known of a target:

- **That it is gone**, not how it ended. Only a process's parent can reap it and read its exit status; the
  follower is not the parent, so "stopped" means the pid no longer names the process that was signalled
  (it exited, whether cleanly, with an error or by the signal, and may be a zombie until its parent reaps
  it). "killed" means it was still there after the grace and was gone after SIGKILL.
- **That it is the same process.** A pidfd (Linux 5.3+) is opened *before* the first signal and checked
  against the start time seen in /proc; the signals go through it, and it becomes readable when that
  process exits, so a reused pid can neither be signalled nor be taken for the target. Without pidfds
  (an older kernel, a seccomp profile, no descriptor left), /proc/PID/stat is polled instead, a zombie
  counts as gone, and the start time (field 22) tells the target from a process that reuses its pid.
- **Whether it may be signalled**: another user's process answers EPERM, which is reported with its fix.
"""

from __future__ import annotations

import math
import os
import select
import signal as signals
import time
from functools import partial

from ._clock import poll_ms
from ._config import (
    pid_file_unreadable,
    validate_pid,
    validate_pid_file,
    validate_program_name,
    validate_signal,
    validate_timeout,
)
from ._errno import explain
from ._errors import ExitDirError
from ._linux import ancestors, pidfd_open, process, process_ids, program_names, running, send_signal
from ._stops import ABSENT, FAILED, Stopped, in_parallel

# How long a target may take to be gone after SIGKILL before we give up on it: SIGKILL is not instant
# for a process stuck in the kernel (a dead NFS or FUSE server), and a follower must never hang on one.
KILL_WAIT = 5.0
# Polling /proc/PID/stat without a pidfd: start short (most programs end within milliseconds of their
# signal), and back off so a long grace costs little.
_FIRST_POLL, _LAST_POLL = 0.005, 0.1


def matches(name: bytes, argv0: bytes, comm: bytes) -> bool:
    """Whether a program started as ``argv0``, which the kernel calls ``comm``, is the program ``name``:
    the file name of its argv[0], or, when its command line is empty or unreadable, its comm (the kernel
    keeps 15 bytes of it).

    >>> matches(b"envoy", b"/usr/local/bin/envoy", b"envoy"), matches(b"envoy", b"/bin/sh", b"sh")
    (True, False)
    >>> matches(b"cloud-sql-proxy", b"", b"cloud-sql-proxy"[:15])
    True
    """
    if argv0:
        return os.path.basename(argv0) == name
    return comm == name[:15]


def find(name: str) -> list[int]:
    """The pids of the running programs called ``name`` (see :func:`matches`), lowest first. This process
    and its ancestors are never among them (stopping them would stop us); nor are zombies and kernel
    threads. A process that ends during the scan, or whose /proc entries we may not read, is skipped.
    Raises ExitDirError if /proc cannot be read at all.

    >>> find("no-such-program-runs-here")
    []
    """
    wanted = os.fsencode(validate_program_name(name))
    try:
        skip = {os.getpid(), *ancestors()}
        found = []
        for pid in sorted(process_ids()):
            if pid in skip:
                continue
            names = program_names(pid)
            if names is not None and matches(wanted, *names):
                found.append(pid)
    except OSError as err:  # no /proc, or no descriptor left to read it: we cannot tell who runs
        raise ExitDirError(f"cannot look for {name!r} among the running processes: {explain(err)}") from None
    return found


def from_pid_file(path: str) -> int | None:
    """The pid in the pid file ``path``; None if there is no such file (the target is not running).
    Whitespace around the pid is tolerated; anything else is an ExitDirError naming the file.

    >>> from_pid_file("/nonexistent/proxy.pid") is None
    True
    """
    path = os.fsdecode(path)
    try:
        with open(path, "rb") as f:
            data = f.read(4096)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise pid_file_unreadable(path, explain(err)) from None
    return validate_pid_file(path, data)


class _Gone:
    """Tells when the target is gone: its pidfd polls readable, or /proc/PID/stat no longer shows it alive
    with its start time."""

    def __init__(self, pid: int, start: int, pidfd: int | None) -> None:
        self.pid, self.start, self.pidfd = pid, start, pidfd

    def now(self) -> bool:
        if self.pidfd is not None:
            return self.within(0.0)
        try:
            return not running(self.pid, self.start)
        except OSError:  # no descriptor to look with: unknown, so not gone
            return False

    def within(self, seconds: float | None) -> bool:
        """Whether it is gone within ``seconds`` (None or inf: however long it takes)."""
        deadline = None if seconds is None or math.isinf(seconds) else time.monotonic() + seconds
        if self.pidfd is not None:
            poller = select.poll()
            poller.register(self.pidfd, select.POLLIN)
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if poller.poll(poll_ms(left)):
                    return True
                if deadline is not None and time.monotonic() >= deadline:
                    return False
        interval = _FIRST_POLL
        while not self.now():
            if deadline is None:
                time.sleep(interval)
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                time.sleep(min(interval, left))
            interval = min(interval * 2, _LAST_POLL)
        return True


def _seconds(value: float) -> str:
    return f"{value:g} s"


def stop_process(
    name: str | None = None,
    *,
    pid_file: str | os.PathLike[str] | None = None,
    signal: int = signals.SIGTERM,
    grace: float | None = 10.0,
) -> list[Stopped]:
    """Stop a program this process did not start, as ``exitdir follow --process``/``--pid-file`` do (a pod
    with ``shareProcessNamespace: true``): every process called ``name`` (see :func:`find`), or the one
    whose pid ``pid_file`` holds. Each gets ``signal``, ``grace`` seconds (None: forever), then SIGKILL,
    then a bounded wait until it is gone, all at once. One :class:`Stopped` per process; one saying
    ``"absent"`` when there is none. Never raises for what the targets do; a bad argument is an
    ExitDirError.

    >>> [s.describe() for s in stop_process("no-such-program-runs-here")]
    ['no-such-program-runs-here: absent: no process of that name in this PID namespace']
    """
    if (name is None) == (pid_file is None):
        raise ExitDirError("stop_process() takes a program name or pid_file=, one of them: give one")
    if pid_file is not None:
        path = os.fsdecode(pid_file)
        try:
            pid = from_pid_file(path)
        except ExitDirError as err:  # garbage in it, or unreadable: said as this target's failure
            return [Stopped(path, FAILED, str(err))]
        if pid is None:
            return [Stopped(path, ABSENT, "no pid file")]
        return [stop(pid, signal=signal, grace=grace, name=path)]
    assert name is not None
    try:
        pids = find(name)
    except ExitDirError as err:  # /proc unreadable: said as this target's failure
        return [Stopped(name, FAILED, str(err))]
    if not pids:
        return [Stopped(name, ABSENT, "no process of that name in this PID namespace")]
    return in_parallel([partial(stop, pid, signal=signal, grace=grace, name=name) for pid in pids])


def stop(
    pid: int,
    *,
    signal: int,
    grace: float | None,
    name: str,
    pidfd: bool = True,
    kill_wait: float = KILL_WAIT,
) -> Stopped:
    """Stop the process ``pid`` (``name`` describes it): send ``signal``, wait up to ``grace`` seconds
    (None: forever) for it to be gone, then SIGKILL it and wait up to ``kill_wait`` seconds more (bounded:
    a process stuck in the kernel outlives SIGKILL, and we must not hang on it). Never
    raises for what the target does; a wrong argument is an ExitDirError. ``pidfd=False`` forces the
    /proc polling used where pidfds are not available (for tests, or a kernel whose pidfds misbehave).

    >>> stop(2**22, signal=15, grace=1.0, name="proxy").describe()
    'proxy (pid 4194304): absent: not running'
    """
    pid = validate_pid(pid)
    signum = validate_signal(signal)
    grace = validate_timeout(grace, "grace=")
    kill_bound = validate_timeout(kill_wait, "kill_wait=")
    target = f"{name} (pid {pid})"
    if pid == os.getpid():
        return Stopped(target, "failed", "that is this process: give the target's pid")
    absent = Stopped(target, "absent", "not running")
    try:
        seen = process(pid)
    except OSError as err:
        return Stopped(target, "failed", f"cannot read /proc/{pid}: {explain(err)}")
    if seen is None or not seen.alive:
        return absent
    try:
        fd = pidfd_open(pid) if pidfd else None
    except OSError:  # ESRCH: it ended meanwhile
        return absent
    try:
        gone = _Gone(pid, seen.start, fd)
        if fd is not None:
            # The pidfd names whoever had the pid when it was opened: make sure that is the process seen.
            try:
                now = process(pid)
            except OSError:
                now = None
            if now is None or now.start != seen.start:
                return absent
        if gone.now():
            return absent
        sig = _signal_name(signum)
        try:
            send_signal(pid, seen.start, fd, signum)
        except ProcessLookupError:
            return absent
        except PermissionError:
            return Stopped(
                target,
                "failed",
                f"not permitted to send {sig}: it runs as another user; run this as that user, or give "
                "it CAP_KILL",
            )
        except OSError as err:
            return Stopped(target, "failed", f"cannot send {sig}: {explain(err)}")
        if signum == signals.SIGKILL:
            if gone.within(kill_bound):
                return Stopped(target, "killed")
            return _stuck(target, kill_bound)
        if gone.within(grace):
            return Stopped(target, "stopped", f"ended after {sig}")
        waited = f"still running {_seconds(grace or 0.0)} after {sig}"
        try:
            send_signal(pid, seen.start, fd, signals.SIGKILL)
        except ProcessLookupError:  # it ended in the moment between
            return Stopped(target, "stopped", f"ended after {sig}")
        except OSError as err:
            return Stopped(target, "failed", f"{waited}, and cannot send SIGKILL: {explain(err)}")
        if gone.within(kill_bound):
            return Stopped(target, "killed", f"{waited}; SIGKILL ended it")
        return _stuck(target, kill_bound)
    finally:
        if fd is not None:
            os.close(fd)


def _signal_name(signum: int) -> str:
    try:
        return signals.Signals(signum).name
    except ValueError:  # a real-time signal has no name of its own
        return f"signal {signum}"


def _stuck(target: str, kill_wait: float | None) -> Stopped:
    return Stopped(
        target,
        "failed",
        f"still running {_seconds(kill_wait or 0.0)} after SIGKILL: it is stuck in the kernel (a dead NFS "
        "or FUSE server?); leaving it",
    )
