"""Exhausted file descriptors: under a real ``ulimit -n``, every command either does its job or says what
it lacks, and a leader's end is always reported.

The limits are set in the child (``resource.setrlimit`` before ``exec``), for real. Each command is run at
every limit from the lowest at which the interpreter itself can start up to one where nothing is short,
and the invariants are asserted at each: no traceback, and either the job was done (the marker found, the
program run and its status reported), or it was not started and the message names the fd limit.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import shutil
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import exitdir

from _support import DROP_TO_NOBODY, EXITDIR, GENEROUS, Child, python, world_searchable_dir

if TYPE_CHECKING:
    from collections.abc import Callable

# Enough for every command on either backend: the sweeps go from the lowest limit up to this one.
ENOUGH = 10
FIX = "raise the open-file limit (ulimit -n"


def limited(n: int) -> Callable[[], None]:
    """A preexec_fn that sets the child's open-file limit to ``n`` (stdin, stdout and stderr count)."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

    return apply


def run(argv: list[str], n: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        preexec_fn=limited(n),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=GENEROUS,
        check=False,
    )


@functools.cache
def lowest_limit() -> int:
    """The lowest open-file limit at which the interpreter starts and exitdir's command line runs."""
    for n in range(3, ENOUGH):
        if run([*EXITDIR, "--version"], n).returncode == 0:
            return n
    pytest.fail(f"exitdir does not even start under ulimit -n {ENOUGH - 1}")


def limits() -> range:
    return range(lowest_limit(), ENOUGH + 1)


def marker_code(directory: Path) -> tuple[int | None, str | None]:
    marker = exitdir.aware(directory).marker
    assert marker is not None, f"no marker in {directory}"
    return marker.code, marker.reason


def test_the_lowest_limit_is_what_the_interpreter_needs() -> None:
    # The sweeps start where the interpreter itself can start (5 here: its own start-up opens files while
    # stdin, stdout and stderr are open); below that nothing of exitdir runs, so nothing can be asserted.
    n = lowest_limit()
    assert run(python("pass"), n - 1).returncode != 0
    assert run(python("pass"), n).returncode == 0


def test_wait_finds_a_marker_already_there_at_every_limit(exit_dir: Path) -> None:
    # Issue 11, row 2: under `ulimit -n 6` the first listing failed with EMFILE and was never retried, so
    # `exitdir wait` ran into its timeout with the marker right there.
    exitdir.exit(3, directory=exit_dir)
    for n in limits():
        done = run([*EXITDIR, "wait", "--json", "--timeout", "5", "--dir", str(exit_dir)], n)
        assert done.returncode == 0, (n, done.stderr)
        assert json.loads(done.stdout)["code"] == 3, n
        assert "Traceback" not in done.stderr, n


def test_exit_and_status_at_every_limit(exit_dir: Path) -> None:
    for n in limits():
        done = run([*EXITDIR, "exit", "--code", str(n), "--dir", str(exit_dir)], n)
        assert done.returncode == 0, (n, done.stderr)
        assert marker_code(exit_dir)[0] == n
        shown = run([*EXITDIR, "status", "--json", "--dir", str(exit_dir)], n)
        assert shown.returncode == 0, (n, shown.stderr)
        assert json.loads(shown.stdout)["markers"][0]["code"] == n


@pytest.mark.parametrize("backend", ["inotify", "poll"])
def test_a_look_that_failed_for_want_of_descriptors_is_retried(
    exit_dir: Path, spawn: type[Child], backend: str
) -> None:
    # The follower's process uses up every descriptor (its own program's doing) while it waits; the marker
    # arrives then; once descriptors are free again it must be found, with its code. Before, inotify read
    # it as an "unreadable" marker of unknown code, and polling never listed the directory again.
    code = (
        "import os, signal, threading, exitdir, exitdir._watch._inotify, ctypes, logging\n"
        f"token = exitdir.aware({str(exit_dir)!r}, backend={backend!r}, poll_interval=0.05)\n"
        "held = []\n"
        "try:\n"
        "    while True:\n"
        "        held.append(os.open('/dev/null', os.O_RDONLY))\n"
        "except OSError:\n"
        "    pass\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1, signal.SIGUSR2])\n"
        "def follow() -> None:\n"
        "    tripped = token.wait(60)\n"
        "    print('tripped', tripped, token.marker.code, flush=True)\n"
        "print('exhausted', flush=True)\n"
        "signal.sigwait([signal.SIGUSR2])  # the marker is there: look now\n"
        "threading.Thread(target=follow).start()\n"
        "signal.sigwait([signal.SIGUSR1])  # the look failed: free the descriptors\n"
        "for fd in held:\n"
        "    os.close(fd)\n"
    )
    follower = spawn(python(code), merge_stderr=True)
    follower.expect("exhausted")
    exitdir.exit(3, directory=exit_dir)
    # A directory that looks settled, so that a poll follower lists it again only if it means to retry.
    os.utime(exit_dir, (0, 0))
    follower.signal(signal.SIGUSR2)
    line = follower.read_until("cannot list exit directory")
    assert "EMFILE (Too many open files)" in line
    assert FIX in line
    follower.signal(signal.SIGUSR1)
    assert follower.read_until("tripped") == "tripped True 3"
    assert follower.wait() == 0


def test_callbacks_beyond_the_thread_limit_are_a_clear_error(exit_dir: Path, spawn: type[Child]) -> None:
    base = world_searchable_dir()
    try:
        directory = Path(base, "exit")
        directory.mkdir()
        prelude = "import resource\n" + DROP_TO_NOBODY  # resource first: nobody cannot read it here
        code = prelude + (
            "import exitdir\n"
            f"token = exitdir.aware({str(directory)!r})\n"
            "resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))  # this process alone: no thread more\n"
            "try:\n"
            "    token.add_callback(lambda: print('called', flush=True))\n"
            "except exitdir.ExitDirError as err:\n"
            "    print('refused:', err, flush=True)\n"
            f"print('tripped', token.wait({GENEROUS}), flush=True)\n"
        )
        child = spawn(python(code))
        line = child.readline()
        assert line.startswith("refused: cannot start the thread that runs exit callbacks: "), line
        assert "ulimit -u" in line
        exitdir.exit(directory=directory)  # the token still works
        child.expect("tripped True")
        assert child.wait() == 0
    finally:
        shutil.rmtree(base)
